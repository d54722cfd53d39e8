# An Amazon MQ for ActiveMQ broker the way strangler uses it: private, STOMP over TLS only,
# an active/standby pair, one broker user whose password lives in Secrets Manager.

data "aws_region" "current" {}

locals {
  secret_name = coalesce(var.secret_name, "amazonmq/${var.broker_name}/strangler")
  # Amazon MQ wants exactly one subnet per instance.
  subnets_needed = var.deployment_mode == "ACTIVE_STANDBY_MULTI_AZ" ? 2 : 1
  # STOMP messages are non-persistent unless the producer sends persistent:true; forcing
  # persistence makes the broker's RECEIPT (which strangler passes on) mean "on disk".
  broker_plugins = var.force_persistent ? "<plugins><forcePersistencyModeBrokerPlugin persistenceFlag=\"true\"/></plugins>" : ""
  # IRSA (iam.tf): the OIDC provider's ARN ends with its issuer
  # (oidc.eks.REGION.amazonaws.com/id/ID), the prefix of the web identity token's claim keys.
  oidc_issuer = var.eks_oidc_provider_arn == null ? "" : element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)
  # Picked by scheme, never by position: Amazon MQ lists ssl, amqp, stomp, mqtt and wss.
  stomp_endpoints = flatten([
    for instance in aws_mq_broker.this.instances : [
      for endpoint in instance.endpoints : endpoint if startswith(endpoint, "stomp+ssl://")
    ]
  ])
}

resource "aws_mq_configuration" "this" {
  name                    = "${var.broker_name}-strangler"
  description             = "ActiveMQ settings for ${var.broker_name}, managed for strangler"
  engine_type             = "ActiveMQ"
  engine_version          = var.engine_version
  authentication_strategy = "simple"

  data = <<-XML
    <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
    <broker xmlns="http://activemq.apache.org/schema/core">
      ${local.broker_plugins}
    </broker>
  XML

  tags = var.tags
}

resource "aws_mq_broker" "this" {
  broker_name        = var.broker_name
  engine_type        = "ActiveMQ"
  engine_version     = var.engine_version
  deployment_mode    = var.deployment_mode
  host_instance_type = var.host_instance_type

  # Reachable only inside the VPC, only on the ports the security group opens (61614).
  publicly_accessible = false
  subnet_ids          = var.subnet_ids
  security_groups     = concat([aws_security_group.stomp.id], var.extra_security_group_ids)

  authentication_strategy    = "simple"
  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  configuration {
    id       = aws_mq_configuration.this.id
    revision = aws_mq_configuration.this.latest_revision
  }

  encryption_options {
    use_aws_owned_key = var.kms_key_arn == null
    kms_key_id        = var.kms_key_arn
  }

  logs {
    general = true
    audit   = true
  }

  maintenance_window_start_time {
    day_of_week = var.maintenance_day_of_week
    time_of_day = var.maintenance_time_of_day
    time_zone   = var.maintenance_time_zone
  }

  user {
    username       = var.username
    password       = random_password.broker.result
    console_access = false
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(var.subnet_ids) == local.subnets_needed
      error_message = "subnet_ids: ${var.deployment_mode} needs exactly ${local.subnets_needed} subnet(s), in different AZs."
    }
  }
}

# Each instance of the pair must report its own STOMP endpoint, or strangler has nothing
# to fail over to.
check "stomp_endpoints" {
  assert {
    condition     = length(local.stomp_endpoints) == local.subnets_needed
    error_message = "Amazon MQ reported ${length(local.stomp_endpoints)} stomp+ssl endpoint(s); expected ${local.subnets_needed}."
  }
}
