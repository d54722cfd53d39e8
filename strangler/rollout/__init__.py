"""``strangler rollout``: one controller for the fleet that steps split routes' weights
up as their ``rollout:`` plans say, gated by Prometheus, by writing the routes file the
proxies already watch (a file, or a git working copy that GitOps tools apply).

Modules, in the order a pass uses them: ``queries`` (the gates' PromQL, from the metrics
contract), ``prometheus`` (asking Prometheus), ``gates`` (a gate's verdict),
``decide`` (advance, hold, roll back or complete: pure), ``edit`` (the new routes file
text, changed only where the rollout owns it), ``targets`` (writing it: file or git),
``controller`` (one pass, the loop, the facts), ``commands`` (the command line).

The controller keeps no state of its own: everything it knows between passes is in the
routes file (weight, ``rollout.state``) and in the facts it wrote.
"""
