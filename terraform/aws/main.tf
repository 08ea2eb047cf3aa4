# S3 object events -> SQS (with a dead-letter queue) -> Lambda (syncd handler).
#
# Two ways in, chosen by var.notification_mode:
# - "eventbridge" (default): S3 -> EventBridge -> a rule -> SQS. This module never writes
#   the bucket's notification configuration, so it cannot remove anyone else's. The
#   bucket must have EventBridge delivery turned on once (syncd deploy enable-eventbridge
#   BUCKET keeps the existing notifications; see terraform/README.md).
# - "bucket_notification": S3 notifies the queue directly. aws_s3_bucket_notification
#   OWNS the bucket's whole notification configuration: every queue, topic and function
#   notification not declared here (pass them in other_*_notifications) is DELETED.
# SQS in between gives retries, batching and partial-batch failure reporting; messages the
# function cannot commit return to the queue and end in the DLQ after max_receive_count.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition    = data.aws_partition.current.partition
  region       = data.aws_region.current.name
  account_id   = data.aws_caller_identity.current.account_id
  bucket_arn   = "arn:${local.partition}:s3:::${var.bucket_name}"
  eventbridge  = var.notification_mode == "eventbridge"
  queue_events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]
  # Where the function may HEAD objects (to settle versioned items whose state an event
  # could not tell).
  readable_objects = "${local.bucket_arn}/${var.filter_prefix}*"
}

resource "aws_kms_key" "syncd" {
  description         = "${var.name}: queues, logs and function environment"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "EventSourcesSendToEncryptedQueue"
        Effect    = "Allow"
        Principal = { Service = local.eventbridge ? "events.amazonaws.com" : "s3.amazonaws.com" }
        Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "aws:SourceArn" = local.eventbridge ? "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${var.name}-objects" : local.bucket_arn
          }
        }
      },
      {
        Sid       = "LogsEncrypt"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      }
    ]
  })
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.syncd.arn
}

resource "aws_sqs_queue" "events" {
  name = "${var.name}-queue"
  # Six times the function's timeout, as AWS advises for SQS event sources.
  visibility_timeout_seconds = 360
  message_retention_seconds  = 345600
  kms_master_key_id          = aws_kms_key.syncd.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_policy" "events_send" {
  queue_url = aws_sqs_queue.events.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.eventbridge ? {
        Sid       = "EventBridgeRuleSends"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.events.arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.objects[0].arn } }
        } : {
        Sid       = "BucketSends"
        Effect    = "Allow"
        Principal = { Service = "s3.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.events.arn
        Condition = {
          ArnEquals    = { "aws:SourceArn" = local.bucket_arn }
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      }
    ]
  })
}

# -- mode "eventbridge": a rule on the bucket's events, nothing on the bucket itself --------

resource "aws_cloudwatch_event_rule" "objects" {
  count       = local.eventbridge ? 1 : 0
  name        = "${var.name}-objects"
  description = "Object Created and Object Deleted events of ${var.bucket_name} for syncd"
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created", "Object Deleted"]
    detail = merge(
      { bucket = { name = [var.bucket_name] } },
      var.filter_prefix == "" ? {} : { object = { key = [{ prefix = var.filter_prefix }] } }
    )
  })
}

# SQS targets take no role: the queue policy above lets the rule send.
resource "aws_cloudwatch_event_target" "queue" {
  count = local.eventbridge ? 1 : 0
  rule  = aws_cloudwatch_event_rule.objects[0].name
  arn   = aws_sqs_queue.events.arn
}

# -- mode "bucket_notification": this resource owns the bucket's whole configuration -------

resource "aws_s3_bucket_notification" "objects" {
  count  = local.eventbridge ? 0 : 1
  bucket = var.bucket_name

  queue {
    id            = "${var.name}-syncd"
    queue_arn     = aws_sqs_queue.events.arn
    events        = local.queue_events
    filter_prefix = var.filter_prefix
  }

  dynamic "queue" {
    for_each = var.other_queue_notifications
    content {
      id            = queue.value.id
      queue_arn     = queue.value.queue_arn
      events        = queue.value.events
      filter_prefix = queue.value.filter_prefix
      filter_suffix = queue.value.filter_suffix
    }
  }

  dynamic "topic" {
    for_each = var.other_topic_notifications
    content {
      id            = topic.value.id
      topic_arn     = topic.value.topic_arn
      events        = topic.value.events
      filter_prefix = topic.value.filter_prefix
      filter_suffix = topic.value.filter_suffix
    }
  }

  dynamic "lambda_function" {
    for_each = var.other_lambda_notifications
    content {
      id                  = lambda_function.value.id
      lambda_function_arn = lambda_function.value.lambda_function_arn
      events              = lambda_function.value.events
      filter_prefix       = lambda_function.value.filter_prefix
      filter_suffix       = lambda_function.value.filter_suffix
    }
  }

  eventbridge = var.keep_bucket_eventbridge
  depends_on  = [aws_sqs_queue_policy.events_send]
}

# -- the function -----------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "function" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.syncd.arn
}

resource "aws_iam_role" "function" {
  name = "${var.name}-role"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# Least privilege: consume its own queue, write its own logs, read its one secret, HEAD the
# objects it watches, and manage its own network interfaces.
resource "aws_iam_role_policy" "function" {
  name = "${var.name}-policy"
  role = aws_iam_role.function.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "ConsumeQueue"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
          Resource = aws_sqs_queue.events.arn
        },
        {
          Sid       = "ReadEncryptedQueue"
          Effect    = "Allow"
          Action    = "kms:Decrypt"
          Resource  = aws_kms_key.syncd.arn
          Condition = { StringEquals = { "kms:ViaService" = "sqs.${local.region}.amazonaws.com" } }
        },
        {
          Sid      = "WriteOwnLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.function.arn}:*"
        },
        {
          Sid      = "ReadCatalogUrl"
          Effect   = "Allow"
          Action   = "secretsmanager:GetSecretValue"
          Resource = var.catalog_url_secret_arn
        },
        {
          Sid      = "HeadWatchedObjects"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = local.readable_objects
        },
        {
          # DescribeNetworkInterfaces works only on "*" (Lambda developer guide).
          Sid      = "DescribeNetworkInterfaces"
          Effect   = "Allow"
          Action   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
          Resource = "*"
        },
        {
          Sid      = "ManageOwnNetworkInterfaces"
          Effect   = "Allow"
          Action   = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
          Resource = "arn:${local.partition}:ec2:${local.region}:${local.account_id}:*/*"
        }
      ],
      var.catalog_url_secret_kms_key_arn == null ? [] : [
        {
          Sid      = "DecryptCatalogUrl"
          Effect   = "Allow"
          Action   = "kms:Decrypt"
          Resource = var.catalog_url_secret_kms_key_arn
          Condition = {
            StringEquals = {
              "kms:ViaService"                  = "secretsmanager.${local.region}.amazonaws.com"
              "kms:EncryptionContext:SecretARN" = var.catalog_url_secret_arn
            }
          }
        }
      ]
    )
  })
}

# X-Ray segments cannot be scoped to a resource; AWS's managed policy for exactly that is
# the narrowest grant.
resource "aws_iam_role_policy_attachment" "xray" {
  role       = aws_iam_role.function.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# In private subnets without a NAT, the function reaches Secrets Manager through this.
resource "aws_security_group" "endpoint" {
  count       = var.create_secretsmanager_endpoint ? 1 : 0
  name        = "${var.name}-secretsmanager-endpoint"
  description = "HTTPS from the syncd function to the Secrets Manager endpoint"
  vpc_id      = var.vpc_id
  ingress {
    description     = "HTTPS from the function"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = var.security_group_ids
  }
}

resource "aws_vpc_endpoint" "secretsmanager" {
  count               = var.create_secretsmanager_endpoint ? 1 : 0
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.secretsmanager"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.endpoint[0].id]
}

resource "aws_lambda_function" "events" {
  function_name           = var.name
  role                    = aws_iam_role.function.arn
  runtime                 = "python3.11"
  handler                 = "handlers.aws_lambda.handler"
  filename                = var.package_path
  source_code_hash        = filebase64sha256(var.package_path)
  timeout                 = 60
  memory_size             = 512
  kms_key_arn             = aws_kms_key.syncd.arn
  code_signing_config_arn = var.code_signing_config_arn
  # Concurrency is bounded on the event source mapping (scaling_config): an SQS mapping
  # ignores reserved concurrency and would count throttled batches as receives.
  #checkov:skip=CKV_AWS_115:concurrency is limited by the SQS mapping's maximum_concurrency, which AWS recommends over reserved concurrency for SQS sources
  #checkov:skip=CKV_AWS_116:an SQS-triggered function is not invoked asynchronously; failed messages go to the queue's own dead-letter queue

  environment {
    variables = {
      SYNCD_CATALOG_URL_SECRET = var.catalog_url_secret_arn
      SYNCD_CONFIG_YAML        = var.syncd_config_yaml
    }
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  tracing_config {
    mode = "Active"
  }

  # The handler prints one JSON object per line; Lambda keeps them as structured logs.
  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.function.name
    application_log_level = "INFO"
    system_log_level      = "WARN"
  }

  # A function in a VPC is refused until its role may create network interfaces.
  depends_on = [
    aws_cloudwatch_log_group.function,
    aws_iam_role_policy.function,
    aws_iam_role_policy_attachment.xray,
  ]
}

resource "aws_lambda_event_source_mapping" "queue" {
  event_source_arn                   = aws_sqs_queue.events.arn
  function_name                      = aws_lambda_function.events.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = 5
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.max_concurrency
  }

  # The mapping polls as soon as it exists: the role must already read the queue.
  depends_on = [aws_iam_role_policy.function]
}
