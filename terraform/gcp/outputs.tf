output "function_uri" {
  description = "HTTPS endpoint of the syncd function (internal ingress only)."
  value       = google_cloudfunctions2_function.events.service_config[0].uri
}

output "topic" {
  description = "The topic Cloud Storage notifies."
  value       = google_pubsub_topic.events.id
}

output "dead_letter_subscription" {
  description = "Where messages the function never accepted are kept (7 days)."
  value       = google_pubsub_subscription.dead_letter.id
}
