output "broker_id" {
  description = "For routes.yaml: brokers.amazonmq.broker_id."
  value       = aws_mq_broker.this.id
}

output "broker_arn" {
  description = "The broker's ARN."
  value       = aws_mq_broker.this.arn
}

output "broker_name" {
  description = "For routes.yaml: brokers.amazonmq.broker_name (alternative to broker_id)."
  value       = aws_mq_broker.this.broker_name
}

output "region" {
  description = "For routes.yaml: brokers.amazonmq.region."
  value       = data.aws_region.current.name
}

output "stomp_endpoints" {
  description = "stomp+ssl:// URL of each instance, in instance order (for static urls:, if discovery is not used)."
  value       = local.stomp_endpoints
}

output "credentials_secret_arn" {
  description = "For routes.yaml: brokers.amazonmq.credentials.secret_id."
  value       = aws_secretsmanager_secret.broker.arn
}

output "security_group_id" {
  description = "The group that opens 61614 to the allowed CIDRs and groups."
  value       = aws_security_group.stomp.id
}

output "strangler_iam_policy_json" {
  description = "IAM policy for the proxies' role: mq:DescribeBroker, mq:ListBrokers, secretsmanager:GetSecretValue (and kms:Decrypt with a customer key)."
  value       = data.aws_iam_policy_document.strangler.json
}

output "routes_yaml" {
  description = "The brokers.amazonmq block for strangler's routes.yaml."
  value       = <<-YAML
    amazonmq:
      broker_id: ${aws_mq_broker.this.id}
      region: ${data.aws_region.current.name}
      credentials:
        secret_id: ${aws_secretsmanager_secret.broker.arn}
  YAML
}

output "strangler_role_arn" {
  description = "With eks_oidc_provider_arn: the sidecar's IAM role, for deploy/kubernetes/serviceaccount.yaml's eks.amazonaws.com/role-arn annotation (null otherwise)."
  value       = one(aws_iam_role.strangler[*].arn)
}
