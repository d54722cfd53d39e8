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

# EKS: the sidecar's own role, assumed through its ServiceAccount (IRSA). Only that
# ServiceAccount, in that namespace, of that cluster, can assume it (local.oidc_issuer:
# main.tf).

data "aws_iam_policy_document" "irsa_trust" {
  count = var.eks_oidc_provider_arn == null ? 0 : 1

  statement {
    sid     = "SidecarServiceAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "strangler" {
  count              = var.eks_oidc_provider_arn == null ? 0 : 1
  name               = "${var.broker_name}-strangler"
  description        = "strangler sidecars (ServiceAccount ${var.kubernetes_namespace}/${var.kubernetes_service_account}): Amazon MQ broker ${var.broker_name}"
  assume_role_policy = data.aws_iam_policy_document.irsa_trust[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "strangler" {
  count  = var.eks_oidc_provider_arn == null ? 0 : 1
  name   = "amazonmq-${var.broker_name}"
  role   = aws_iam_role.strangler[0].id
  policy = data.aws_iam_policy_document.strangler.json
}
