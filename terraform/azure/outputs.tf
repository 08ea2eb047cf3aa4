output "function_app_id" {
  description = "Resource id of the syncd function app."
  value       = azurerm_linux_function_app.events.id
}

output "function_principal_id" {
  description = "The app's managed identity: grant it Key Vault secret read and Storage Blob Data Owner on the runtime account."
  value       = azurerm_linux_function_app.events.identity[0].principal_id
}

output "system_topic_id" {
  description = "The Event Grid system topic of the storage account."
  value       = azurerm_eventgrid_system_topic.storage.id
}
