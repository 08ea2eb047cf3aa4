output "function_app_id" {
  description = "Resource id of the syncd function app."
  value       = azurerm_linux_function_app.events.id
}

output "function_app_hostname" {
  description = "Default hostname of the function app (the `webhook` route is https://HOST/api/events)."
  value       = azurerm_linux_function_app.events.default_hostname
}

output "function_principal_id" {
  description = "Principal id of the app's system-assigned identity; the module grants it Storage Blob Data Owner on the runtime account, Key Vault Secrets User on the catalog URL secret and Storage Blob Data Reader on the watched container."
  value       = azurerm_linux_function_app.events.identity[0].principal_id
}

output "system_topic_id" {
  description = "The Event Grid system topic of the watched storage account."
  value       = azurerm_eventgrid_system_topic.storage.id
}

output "system_topic_principal_id" {
  description = "Principal id of the system topic's identity, which writes dead letters (Storage Blob Data Contributor on the dead-letter container)."
  value       = azurerm_eventgrid_system_topic.storage.identity[0].principal_id
}

output "event_subscription_id" {
  description = "The Event Grid subscription delivering to `on_blob_event`, or null while create_event_subscription is false."
  value       = one(azurerm_eventgrid_system_topic_event_subscription.blobs[*].id)
}

output "dead_letter_container_id" {
  description = "Resource id of the container that receives dead-lettered events."
  value       = azurerm_storage_container.dead_letters.id
}
