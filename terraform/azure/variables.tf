variable "resource_group_name" {
  description = "Resource group for the function app, its plan and the Event Grid system topic."
  type        = string
}

variable "location" {
  description = "Azure region of the function app and the system topic; the topic must be in the watched storage account's region."
  type        = string
}

variable "name" {
  description = "Name prefix for the function app, plan, system topic and subscription; the app name must be globally unique."
  type        = string
  default     = "syncd-events"
}

variable "storage_account_id" {
  description = "Resource id of the storage account whose blob events feed syncd."
  type        = string

  validation {
    condition     = can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Storage/storageAccounts/[^/]+$", var.storage_account_id))
    error_message = "storage_account_id must be a storage account resource id."
  }
}

variable "container_name" {
  description = "Only blobs in this container of the watched account are delivered; the function may read (HEAD) blobs in it."
  type        = string
}

variable "function_storage_account_id" {
  description = "Resource id of the storage account the Functions runtime uses (AzureWebJobsStorage), reached with the app's managed identity."
  type        = string

  validation {
    condition     = can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Storage/storageAccounts/[^/]+$", var.function_storage_account_id))
    error_message = "function_storage_account_id must be a storage account resource id."
  }
}

variable "dead_letter_storage_account_id" {
  description = "Resource id of the storage account that receives events Event Grid could not deliver."
  type        = string

  validation {
    condition     = can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Storage/storageAccounts/[^/]+$", var.dead_letter_storage_account_id))
    error_message = "dead_letter_storage_account_id must be a storage account resource id."
  }
}

variable "dead_letter_container_name" {
  description = "Container the module creates in the dead-letter account for dead-lettered events."
  type        = string
  default     = "syncd-dead-letters"
}

variable "catalog_url_secret_uri" {
  description = "Key Vault secret URI holding the PostgreSQL catalog URL, versionless to follow rotation (https://VAULT.vault.azure.net/secrets/NAME); used as a Key Vault reference."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+/secrets/[^/]+(/[^/]+)?/?$", var.catalog_url_secret_uri))
    error_message = "catalog_url_secret_uri must look like https://VAULT.vault.azure.net/secrets/NAME."
  }
}

variable "catalog_url_key_vault_id" {
  description = "Resource id of the Key Vault (Azure RBAC permission model) holding that secret; the app gets Key Vault Secrets User on the secret only."
  type        = string

  validation {
    condition     = can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.KeyVault/vaults/[^/]+$", var.catalog_url_key_vault_id))
    error_message = "catalog_url_key_vault_id must be a Key Vault resource id."
  }
}

variable "syncd_config_yaml" {
  description = "The routing part of syncd.yaml (integrations, drivers, datasets), passed as SYNCD_CONFIG_YAML."
  type        = string
}

variable "package_zip" {
  description = "Path of the run-from-package zip `syncd deploy package azure --out build` writes (build/syncd-azure-function.zip); deployed in the same apply. Terraform redeploys only when this path changes."
  type        = string

  validation {
    condition     = endswith(var.package_zip, ".zip")
    error_message = "package_zip must be the path of a .zip file."
  }
}

variable "create_event_subscription" {
  description = "Create the Event Grid subscription in this apply. Set false to apply the app and code first, then true once `on_blob_event` is listed in the app."
  type        = bool
  default     = true
}

variable "max_delivery_attempts" {
  description = "Event Grid delivery attempts (1 to 30) before an event is dead-lettered."
  type        = number
  default     = 30

  validation {
    condition     = var.max_delivery_attempts >= 1 && var.max_delivery_attempts <= 30
    error_message = "max_delivery_attempts must be between 1 and 30."
  }
}
