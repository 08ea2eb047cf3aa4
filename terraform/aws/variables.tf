variable "bucket_name" {
  description = "The S3 bucket whose object notifications feed syncd."
  type        = string
}

variable "name" {
  description = "Name prefix for the function, queues, role and key."
  type        = string
  default     = "syncd-events"
}

variable "package_path" {
  description = "The zip built by `syncd deploy package aws --out DIR` (DIR/syncd-aws-lambda.zip)."
  type        = string
}

variable "catalog_url_secret_arn" {
  description = "ARN of a Secrets Manager secret holding the PostgreSQL catalog URL; the function reads it at start (SYNCD_CATALOG_URL_SECRET)."
  type        = string
}

variable "syncd_config_yaml" {
  description = "The routing part of syncd.yaml (integrations, drivers, datasets), passed as SYNCD_CONFIG_YAML."
  type        = string
}

variable "filter_prefix" {
  description = "Only keys under this prefix are notified (empty: all)."
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

variable "reserved_concurrency" {
  description = "Upper bound on concurrent invocations (protects the catalog database)."
  type        = number
  default     = 10
}

variable "code_signing_config_arn" {
  description = "A Lambda code-signing configuration to enforce (optional)."
  type        = string
  default     = null
}
