terraform {
  required_version = ">= 1.5.0, < 2.0.0"
  required_providers {
    google = {
      source = "hashicorp/google"
      # Cloud Functions gen2 with Pub/Sub event triggers and subscription expiration
      # policies, as the module uses them.
      version = ">= 5.0.0, < 7.0.0"
    }
  }
}
