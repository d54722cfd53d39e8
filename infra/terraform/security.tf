# Only STOMP over TLS (61614), only from the proxies. No egress rule: the broker initiates
# nothing, and Terraform removes the allow-all egress AWS adds to a new group.

resource "aws_security_group" "stomp" {
  name_prefix = "${var.broker_name}-stomp-"
  description = "STOMP over TLS to Amazon MQ broker ${var.broker_name} from strangler only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.broker_name}-stomp" })

  lifecycle {
    # The broker keeps pointing at a group while a replacement is made.
    create_before_destroy = true

    precondition {
      condition     = length(var.allowed_cidr_blocks) + length(var.allowed_security_group_ids) > 0
      error_message = "Set allowed_cidr_blocks or allowed_security_group_ids: otherwise nothing can reach the broker."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "stomp_from_cidr" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.stomp.id
  description       = "STOMP over TLS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 61614
  to_port           = 61614
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "stomp_from_security_group" {
  # Keyed by position, not by id: ids of groups created in the same apply are unknown at
  # plan time, and for_each keys must be known.
  for_each = { for index, id in var.allowed_security_group_ids : tostring(index) => id }

  security_group_id            = aws_security_group.stomp.id
  description                  = "STOMP over TLS from strangler's security group"
  ip_protocol                  = "tcp"
  from_port                    = 61614
  to_port                      = 61614
  referenced_security_group_id = each.value
}
