variable "bucket_name" {
  description = "The S3 bucket whose object events feed syncd."
  type        = string
}

variable "name" {
  description = "Name prefix for the function, queues, role, rule and key."
  type        = string
  default     = "syncd-events"
}

variable "notification_mode" {
  description = "\"eventbridge\" (default): S3 -> EventBridge -> SQS; the bucket's notification configuration is never written, and EventBridge delivery must be on for the bucket (syncd deploy enable-eventbridge BUCKET). \"bucket_notification\": S3 notifies the queue directly and THIS MODULE OWNS THE BUCKET'S WHOLE NOTIFICATION CONFIGURATION: anything not passed in other_*_notifications is deleted."
  type        = string
  default     = "eventbridge"
  validation {
    condition     = contains(["eventbridge", "bucket_notification"], var.notification_mode)
    error_message = "notification_mode is \"eventbridge\" or \"bucket_notification\"."
  }
}

variable "other_queue_notifications" {
  description = "bucket_notification mode: the bucket's other queue notifications, kept in its configuration (ids must be unique)."
  type = list(object({
    id            = string
    queue_arn     = string
    events        = list(string)
    filter_prefix = optional(string)
    filter_suffix = optional(string)
  }))
  default = []
}

variable "other_topic_notifications" {
  description = "bucket_notification mode: the bucket's SNS topic notifications, kept in its configuration."
  type = list(object({
    id            = string
    topic_arn     = string
    events        = list(string)
    filter_prefix = optional(string)
    filter_suffix = optional(string)
  }))
  default = []
}

variable "other_lambda_notifications" {
  description = "bucket_notification mode: the bucket's Lambda function notifications, kept in its configuration."
  type = list(object({
    id                  = string
    lambda_function_arn = string
    events              = list(string)
    filter_prefix       = optional(string)
    filter_suffix       = optional(string)
  }))
  default = []
}

variable "keep_bucket_eventbridge" {
  description = "bucket_notification mode: keep EventBridge delivery on for the bucket (set true if anything else uses it)."
  type        = bool
  default     = false
}

variable "package_path" {
  description = "The zip built by `syncd deploy package aws --out DIR` (DIR/syncd-aws-lambda.zip)."
  type        = string
}

variable "catalog_url_secret_arn" {
  description = "ARN of a Secrets Manager secret holding the PostgreSQL catalog: a URL, or the JSON of an RDS-style secret (username, password, host, port, dbname). Read at start (SYNCD_CATALOG_URL_SECRET)."
  type        = string
}

variable "catalog_url_secret_kms_key_arn" {
  description = "The customer-managed KMS key that encrypts that secret, if it is not the AWS managed key: the function may decrypt with it through Secrets Manager only."
  type        = string
  default     = null
}

variable "syncd_config_yaml" {
  description = "The routing part of syncd.yaml (integrations, drivers, datasets), passed as SYNCD_CONFIG_YAML."
  type        = string
}

variable "filter_prefix" {
  description = "Only keys under this prefix are delivered (empty: all)."
  type        = string
  default     = ""
}

variable "subnet_ids" {
  description = "Subnets that reach the catalog database (the function runs in the VPC)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups for the function's network interfaces."
  type        = list(string)
}

variable "create_secretsmanager_endpoint" {
  description = "Create a Secrets Manager interface endpoint in the subnets (needed when they have no NAT gateway or other route to Secrets Manager); set vpc_id with it."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "The subnets' VPC, for the Secrets Manager endpoint (with create_secretsmanager_endpoint)."
  type        = string
  default     = null
}

variable "batch_size" {
  description = "SQS messages per invocation."
  type        = number
  default     = 100
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "max_concurrency" {
  description = "Upper bound on concurrent invocations from the queue (2 to 1000); protects the catalog database."
  type        = number
  default     = 10
  validation {
    condition     = var.max_concurrency >= 2 && var.max_concurrency <= 1000
    error_message = "max_concurrency is between 2 and 1000 (the SQS event source's range)."
  }
}

variable "code_signing_config_arn" {
  description = "A Lambda code-signing configuration to enforce (optional)."
  type        = string
  default     = null
}
