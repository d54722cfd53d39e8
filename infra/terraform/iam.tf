# Exactly what the proxy's AWS identity needs: discover this broker and read its secret.
# Attach the output strangler_iam_policy_json to the role the proxies run as.

data "aws_iam_policy_document" "strangler" {
  statement {
    sid       = "DescribeBroker"
    effect    = "Allow"
    actions   = ["mq:DescribeBroker"]
    resources = [aws_mq_broker.this.arn]
  }

  # Only needed when routes.yaml names the broker by broker_name. ListBrokers supports no
  # resource-level permissions, so it cannot be narrowed below "*".
  statement {
    sid       = "ListBrokers"
    effect    = "Allow"
    actions   = ["mq:ListBrokers"]
    resources = ["*"]
  }

  statement {
    sid       = "ReadBrokerCredentials"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.broker.arn]
  }

  # With a customer managed key the secret is readable only with kms:Decrypt, and only
  # through Secrets Manager.
  dynamic "statement" {
    for_each = var.secret_kms_key_arn == null ? [] : [var.secret_kms_key_arn]
    content {
      sid       = "DecryptBrokerCredentials"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
      }
    }
  }
}
