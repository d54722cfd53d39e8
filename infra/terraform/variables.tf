variable "broker_name" {
  description = "Amazon MQ broker name (unique per account and region). routes.yaml may refer to it as broker_name."
  type        = string

  validation {
    # Amazon MQ's own rule for broker names.
    condition     = can(regex("^[A-Za-z0-9._~-]{1,50}$", var.broker_name))
    error_message = "broker_name: 1-50 letters, digits, '-', '.', '_' or '~'."
  }
}

variable "engine_version" {
  description = "ActiveMQ major.minor. 5.15-5.17 are past end of support on Amazon MQ; with auto minor upgrades Amazon MQ takes major.minor only."
  type        = string
  default     = "5.18"

  validation {
    condition     = can(regex("^5\\.(1[89]|[2-9][0-9])$", var.engine_version))
    error_message = "engine_version: 5.18 or later, as major.minor (e.g. \"5.18\", \"5.19\")."
  }
}

variable "deployment_mode" {
  description = "ACTIVE_STANDBY_MULTI_AZ (two instances in two AZs, one active) or SINGLE_INSTANCE (no standby: every reboot is an outage)."
  type        = string
  default     = "ACTIVE_STANDBY_MULTI_AZ"

  validation {
    condition     = contains(["ACTIVE_STANDBY_MULTI_AZ", "SINGLE_INSTANCE"], var.deployment_mode)
    error_message = "deployment_mode: ACTIVE_STANDBY_MULTI_AZ or SINGLE_INSTANCE (CLUSTER_MULTI_AZ is RabbitMQ only)."
  }
}

variable "host_instance_type" {
  description = "Broker instance type. mq.m5.large or larger for production; mq.t3.micro only for trials (SINGLE_INSTANCE only)."
  type        = string
  default     = "mq.m5.large"
}

variable "vpc_id" {
  description = "VPC of the broker's security group (the VPC of subnet_ids)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets: exactly two in different AZs for ACTIVE_STANDBY_MULTI_AZ, one for SINGLE_INSTANCE."
  type        = list(string)
}

variable "allowed_cidr_blocks" {
  description = "IPv4 CIDRs allowed to reach STOMP over TLS (61614): where the strangler proxies run. Nothing else is opened."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "allowed_cidr_blocks: valid IPv4 CIDRs, and never 0.0.0.0/0."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups (e.g. the proxies' own) allowed to reach STOMP over TLS (61614)."
  type        = list(string)
  default     = []
}

variable "extra_security_group_ids" {
  description = "Further security groups to attach to the broker (they may open more ports: review them)."
  type        = list(string)
  default     = []
}

variable "username" {
  description = "The broker user strangler logs in as."
  type        = string
  default     = "strangler"

  validation {
    # Amazon MQ for ActiveMQ user names: letters, digits, '-', '.', '_', '~'; 2-100 long.
    condition     = can(regex("^[A-Za-z0-9._~-]{2,100}$", var.username))
    error_message = "username: 2-100 letters, digits, '-', '.', '_' or '~'."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for data at rest; null uses an AWS owned key."
  type        = string
  default     = null
}

variable "secret_kms_key_arn" {
  description = "Customer managed KMS key for the credentials secret; null uses aws/secretsmanager. When set, the IAM policy output also grants kms:Decrypt through Secrets Manager."
  type        = string
  default     = null
}

variable "secret_recovery_window_days" {
  description = "Days a deleted credentials secret can be restored (0 deletes at once)."
  type        = number
  default     = 7
}

variable "maintenance_day_of_week" {
  description = "Day of the weekly maintenance window (the active/standby pair fails over then)."
  type        = string
  default     = "SUNDAY"

  validation {
    condition     = contains(["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"], var.maintenance_day_of_week)
    error_message = "maintenance_day_of_week: MONDAY .. SUNDAY."
  }
}

variable "maintenance_time_of_day" {
  description = "Start of the weekly maintenance window, HH:MM in maintenance_time_zone."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_time_of_day))
    error_message = "maintenance_time_of_day: HH:MM, 24-hour."
  }
}

variable "maintenance_time_zone" {
  description = "Time zone of the maintenance window (IANA name or UTC)."
  type        = string
  default     = "UTC"
}

variable "force_persistent" {
  description = "Store every message persistently, even STOMP SENDs without 'persistent:true' (ActiveMQ's STOMP default is non-persistent), so a strangler RECEIPT means the message is on disk."
  type        = bool
  default     = true
}

variable "apply_immediately" {
  description = "Apply broker changes (and their reboot) now instead of in the maintenance window."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "secret_name" {
  description = "Name of the Secrets Manager secret holding {\"username\",\"password\"}; null: amazonmq/<broker_name>/strangler."
  type        = string
  default     = null
}

variable "eks_oidc_provider_arn" {
  description = "EKS only: the cluster's IAM OIDC provider ARN. Set, the module creates the sidecar's IRSA role (output strangler_role_arn, for deploy/kubernetes/serviceaccount.yaml); null: attach strangler_iam_policy_json to a role of your own."
  type        = string
  default     = null

  validation {
    condition     = var.eks_oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+", var.eks_oidc_provider_arn))
    error_message = "eks_oidc_provider_arn: arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID."
  }
}

variable "kubernetes_namespace" {
  description = "Namespace of the sidecar's ServiceAccount (with eks_oidc_provider_arn)."
  type        = string
  default     = "default"
}

variable "kubernetes_service_account" {
  description = "Name of the sidecar's ServiceAccount (with eks_oidc_provider_arn); deploy/kubernetes names it strangler."
  type        = string
  default     = "strangler"
}
