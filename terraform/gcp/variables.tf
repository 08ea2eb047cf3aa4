variable "project" {
  description = "The Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
  default     = "europe-west1"
}

variable "bucket_name" {
  description = "The Cloud Storage bucket whose object notifications feed syncd."
  type        = string
}

variable "name" {
  description = "Name prefix for the topic, subscription, function and service accounts."
  type        = string
  default     = "syncd-events"
}

variable "source_archive_bucket" {
  description = "A bucket the module uploads the function's source archive to (one object per build)."
  type        = string
}

variable "package_zip" {
  description = "The archive built by `syncd deploy package gcp --out DIR` (DIR/syncd-gcp-function.zip)."
  type        = string
}

variable "catalog_url_secret_id" {
  description = "Secret Manager secret (id) holding the PostgreSQL catalog URL, exposed as SYNCD_CATALOG_URL."
  type        = string
}

variable "syncd_config_yaml" {
  description = "The routing part of syncd.yaml (integrations, drivers, datasets), passed as SYNCD_CONFIG_YAML."
  type        = string
}

variable "object_name_prefix" {
  description = "Only objects under this prefix are notified (empty: all)."
  type        = string
  default     = ""
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message moves to the dead-letter topic."
  type        = number
  default     = 10
}

variable "vpc_connector" {
  description = "A Serverless VPC Access connector that reaches the catalog database (optional)."
  type        = string
  default     = null
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/.../cryptoKeys/...) that encrypts the topics."
  type        = string
}

variable "delivery" {
  description = "How the topic reaches the function: \"push\" (a push subscription with a dead-letter topic, entry point on_pubsub_push) or \"eventarc\" (a Pub/Sub trigger, entry point on_storage_event)."
  type        = string
  default     = "push"
  validation {
    condition     = contains(["push", "eventarc"], var.delivery)
    error_message = "delivery is \"push\" or \"eventarc\"."
  }
}
