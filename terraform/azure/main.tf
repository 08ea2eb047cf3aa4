# Storage account -> Event Grid system topic -> event subscription (retries, dead-letter
# container) -> Azure Function `on_blob_event` (Event Grid trigger). The function raises when
# a change was not committed, so Event Grid retries it and finally dead-letters it.
#
# One apply deploys the code too (`zip_deploy_file`), because Event Grid refuses a subscription
# whose function does not exist yet ("Destination endpoint not found"). Set
# `create_event_subscription = false` to apply the rest first and add the subscription later.

locals {
  # /subscriptions/S/resourceGroups/G/providers/Microsoft.Storage/storageAccounts/NAME
  function_storage_account_name = element(split("/", var.function_storage_account_id), 8)

  # https://VAULT.vault.azure.net/secrets/NAME[/VERSION]
  catalog_url_secret_name = element(split("/", var.catalog_url_secret_uri), 4)
  catalog_url_vault_host  = element(split("/", var.catalog_url_secret_uri), 2)

  # Role scopes, each the narrowest resource the identity reads or writes.
  catalog_url_secret_scope = "${var.catalog_url_key_vault_id}/secrets/${local.catalog_url_secret_name}"
}

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
  #checkov:skip=CKV_AZURE_221:Event Grid push delivery cannot reach a function app with public network access disabled or behind a private endpoint (learn.microsoft.com/azure/event-grid/consume-private-endpoints), and the provider's zip deploy posts to the app's public SCM host; the Event Grid webhook stays guarded by the function's system key.
  name                          = var.name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  service_plan_id               = azurerm_service_plan.functions.id
  storage_account_name          = local.function_storage_account_name
  storage_uses_managed_identity = true
  https_only                    = true
  public_network_access_enabled = true
  builtin_logging_enabled       = false

  # Off: Event Grid presents no client certificate, so "Required" makes every delivery fail
  # with Forbidden (MicrosoftDocs/azure-docs#99046).
  client_certificate_enabled = false

  # No App Service Authentication (auth_settings): an `azure_function_endpoint` delivery
  # carries no Entra token and is answered 401 (Azure/azure-functions-eventgrid-extension#103).
  # The Event Grid webhook requires the function's system key, the `webhook` route a function key.

  # The code ships in this apply. zip_deploy_file needs WEBSITE_RUN_FROM_PACKAGE=1 and posts
  # the zip to Kudu with the publishing profile's basic credentials, so WebDeploy basic auth
  # stays on (provider docs, linux_function_app: zip_deploy_file and
  # webdeploy_publish_basic_authentication_enabled); FTP basic auth is off.
  zip_deploy_file                                = var.package_zip
  webdeploy_publish_basic_authentication_enabled = true
  ftp_publish_basic_authentication_enabled       = false

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
    WEBSITE_RUN_FROM_PACKAGE = "1"
    SYNCD_CONFIG_YAML        = var.syncd_config_yaml
    SYNCD_CATALOG_URL        = "@Microsoft.KeyVault(SecretUri=${var.catalog_url_secret_uri})"
  }
}

# The Functions host keeps its keys (the Event Grid system key among them) and its locks in
# blobs of its own storage account, and creates those containers itself: Storage Blob Data
# Owner on that account is the documented minimum for an identity-based AzureWebJobsStorage.
resource "azurerm_role_assignment" "function_host_storage" {
  scope                            = var.function_storage_account_id
  role_definition_name             = "Storage Blob Data Owner"
  principal_id                     = azurerm_linux_function_app.events.identity[0].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

# SYNCD_CATALOG_URL is a Key Vault reference, resolved with the app's system-assigned identity.
resource "azurerm_role_assignment" "function_catalog_url" {
  scope                            = local.catalog_url_secret_scope
  role_definition_name             = "Key Vault Secrets User"
  principal_id                     = azurerm_linux_function_app.events.identity[0].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true

  lifecycle {
    precondition {
      condition     = lower(split(".", local.catalog_url_vault_host)[0]) == lower(element(split("/", var.catalog_url_key_vault_id), 8))
      error_message = "catalog_url_secret_uri must name a secret in the vault catalog_url_key_vault_id."
    }
  }
}

resource "azurerm_eventgrid_system_topic" "storage" {
  name                = "${var.name}-topic"
  resource_group_name = var.resource_group_name
  location            = var.location
  source_resource_id  = var.storage_account_id
  topic_type          = "Microsoft.Storage.StorageAccounts"

  # Writes dead letters with this identity instead of the account's access keys.
  identity {
    type = "SystemAssigned"
  }
}

# Event Grid writes dead letters into an existing container only.
resource "azurerm_storage_container" "dead_letters" {
  #checkov:skip=CKV2_AZURE_21:The dead-letter storage account is passed in, not managed here; blob read logging (storage insights) is an account setting for whoever defines that account, and only Event Grid's identity writes to this private container.
  name                  = var.dead_letter_container_name
  storage_account_id    = var.dead_letter_storage_account_id
  container_access_type = "private"
}

resource "azurerm_role_assignment" "topic_dead_letters" {
  scope                            = azurerm_storage_container.dead_letters.id
  role_definition_name             = "Storage Blob Data Contributor"
  principal_id                     = azurerm_eventgrid_system_topic.storage.identity[0].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

resource "azurerm_eventgrid_system_topic_event_subscription" "blobs" {
  count               = var.create_event_subscription ? 1 : 0
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

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = var.dead_letter_storage_account_id
    storage_blob_container_name = azurerm_storage_container.dead_letters.name
  }

  # The function must be deployed (the app's zip deploy) and its host able to read its keys
  # before Event Grid validates the endpoint; the topic's identity must hold its role before
  # Event Grid accepts the dead-letter destination. Terraform cannot infer the role ones.
  depends_on = [
    azurerm_linux_function_app.events,
    azurerm_role_assignment.function_host_storage,
    azurerm_role_assignment.topic_dead_letters,
  ]
}
