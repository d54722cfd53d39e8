# The broker user's password: generated here, kept in Secrets Manager as the JSON that
# strangler reads (credentials: {secret_id: ...}). It is also in the Terraform state, like
# every password Terraform sets: keep the state encrypted and access-controlled.

resource "random_password" "broker" {
  length = 32
  # Amazon MQ for ActiveMQ refuses ',', ':' and '='; the rest of these are safe in a STOMP
  # passcode header and in JSON.
  special          = true
  override_special = "!#%*()-_+[]{}<>?"
  min_lower        = 2
  min_upper        = 2
  min_numeric      = 2
  min_special      = 2
}

resource "aws_secretsmanager_secret" "broker" {
  # No automatic rotation: Amazon MQ for ActiveMQ applies a user's new password only at the
  # broker's next reboot, so a rotation Lambda would put a password in the secret that the
  # broker refuses until then (every new strangler login would fail). Rotate by hand with a
  # reboot (README, "Notes").
  #checkov:skip=CKV2_AWS_57:Amazon MQ applies a new user password only after a broker reboot; rotation is manual with a reboot (README)
  name                    = local.secret_name
  description             = "Amazon MQ broker ${var.broker_name}: the user strangler logs in as"
  kms_key_id              = var.secret_kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "broker" {
  secret_id = aws_secretsmanager_secret.broker.id
  secret_string = jsonencode({
    username = var.username
    password = random_password.broker.result
  })
}
