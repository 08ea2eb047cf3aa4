output "function_arn" {
  description = "ARN of the syncd event function."
  value       = aws_lambda_function.events.arn
}

output "queue_url" {
  description = "URL of the queue the bucket's events arrive on."
  value       = aws_sqs_queue.events.id
}

output "dead_letter_queue_url" {
  description = "URL of the queue that keeps messages the function could not commit."
  value       = aws_sqs_queue.dead_letter.id
}

output "kms_key_arn" {
  description = "The key that encrypts the queues, the logs and the function environment."
  value       = aws_kms_key.syncd.arn
}

output "event_rule_arn" {
  description = "eventbridge mode: the rule that forwards the bucket's object events (null in bucket_notification mode)."
  value       = local.eventbridge ? aws_cloudwatch_event_rule.objects[0].arn : null
}
