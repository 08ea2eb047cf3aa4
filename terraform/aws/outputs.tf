output "function_arn" {
  description = "ARN of the syncd event function."
  value       = aws_lambda_function.events.arn
}

output "queue_url" {
  description = "URL of the queue S3 notifies."
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
