variable "resource_group_name" {
  description = "Resource group for the function app and the Event Grid system topic."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "name" {
  description = "Name prefix for the function app, plan and subscription."
  type        = string
  default     = "syncd-events"
}

variable "storage_account_id" {
  description = "The storage account whose blob events feed syncd."
  type        = string
}

variable "container_name" {
  description = "Only blobs in this container are delivered."
  type        = string
}

variable "function_storage_account_name" {
  description = "Storage account the Functions runtime uses (accessed with the app's managed identity)."
  type        = string
}

variable "dead_letter_storage_account_id" {
  description = "Storage account for events Event Grid could not deliver."
  type        = string
}

variable "dead_letter_container_name" {
  description = "Container in that account that receives dead-lettered events."
  type        = string
  default     = "syncd-dead-letters"
}

variable "catalog_url_secret_uri" {
  description = "Key Vault secret URI holding the PostgreSQL catalog URL (a Key Vault reference in app settings)."
  type        = string
}

variable "syncd_config_yaml" {
  description = "The routing part of syncd.yaml (integrations, drivers, datasets), passed as SYNCD_CONFIG_YAML."
  type        = string
}

variable "max_delivery_attempts" {
  description = "Event Grid delivery attempts before dead-lettering."
  type        = number
  default     = 30
}
