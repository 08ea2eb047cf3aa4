# Storage account -> Event Grid system topic -> event subscription (retries, dead-letter
# container) -> Azure Function `on_blob_event` (Event Grid trigger). The function raises when
# a change was not committed, so Event Grid retries it and finally dead-letters it.

resource "azurerm_service_plan" "functions" {
  name                   = "${var.name}-plan"
  resource_group_name    = var.resource_group_name
  location               = var.location
  os_type                = "Linux"
  sku_name               = "EP1"
  zone_balancing_enabled = true
  worker_count           = 3
}

resource "azurerm_linux_function_app" "events" {
  name                          = var.name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  service_plan_id               = azurerm_service_plan.functions.id
  storage_account_name          = var.function_storage_account_name
  storage_uses_managed_identity = true
  https_only                    = true
  public_network_access_enabled = false
  builtin_logging_enabled       = false
  client_certificate_enabled    = true
  client_certificate_mode       = "Required"

  identity {
    type = "SystemAssigned"
  }

  site_config {
    minimum_tls_version = "1.2"
    ftps_state          = "Disabled"
    http2_enabled       = true
    application_stack {
      python_version = "3.11"
    }
  }

  app_settings = {
    SYNCD_CONFIG_YAML = var.syncd_config_yaml
    SYNCD_CATALOG_URL = "@Microsoft.KeyVault(SecretUri=${var.catalog_url_secret_uri})"
  }

  auth_settings {
    enabled = true
  }
}

resource "azurerm_eventgrid_system_topic" "storage" {
  name                   = "${var.name}-topic"
  resource_group_name    = var.resource_group_name
  location               = var.location
  source_arm_resource_id = var.storage_account_id
  topic_type             = "Microsoft.Storage.StorageAccounts"
}

resource "azurerm_eventgrid_system_topic_event_subscription" "blobs" {
  name                = "${var.name}-blobs"
  system_topic        = azurerm_eventgrid_system_topic.storage.name
  resource_group_name = var.resource_group_name

  included_event_types = ["Microsoft.Storage.BlobCreated", "Microsoft.Storage.BlobDeleted"]
  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${var.container_name}/blobs/"
  }

  azure_function_endpoint {
    function_id                       = "${azurerm_linux_function_app.events.id}/functions/on_blob_event"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  retry_policy {
    max_delivery_attempts = var.max_delivery_attempts
    event_time_to_live    = 1440
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = var.dead_letter_storage_account_id
    storage_blob_container_name = var.dead_letter_container_name
  }
}
