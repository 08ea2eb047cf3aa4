# Cloud Storage notifications -> Pub/Sub topic -> the Cloud Function gen2, one of two ways:
# - delivery = "push" (default): a push subscription with OIDC, retries and a dead-letter
#   topic -> `on_pubsub_push`. A message the function does not accept (it answers non-2xx
#   when the change was not committed) is redelivered with backoff and, after
#   max_delivery_attempts, parked on the dead-letter topic's subscription.
# - delivery = "eventarc": a Pub/Sub trigger on the topic -> `on_storage_event`, which
#   receives `google.cloud.pubsub.topic.v1.messagePublished` CloudEvents. Eventarc owns
#   the subscription (retried for up to 24 hours; no dead-letter topic of ours).
# Either way the notification's attributes (overwrittenByGeneration) reach the function.

data "google_project" "this" {
  project_id = var.project
}

data "google_storage_project_service_account" "gcs" {
  project = var.project
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  push         = var.delivery == "push"
}

resource "google_pubsub_topic" "events" {
  project      = var.project
  name         = "${var.name}-topic"
  kms_key_name = var.kms_key_name
  depends_on   = [google_kms_crypto_key_iam_member.pubsub_uses_key]
}

resource "google_pubsub_topic" "dead_letter" {
  project      = var.project
  name         = "${var.name}-dead-letter"
  kms_key_name = var.kms_key_name
  depends_on   = [google_kms_crypto_key_iam_member.pubsub_uses_key]
}

resource "google_kms_crypto_key_iam_member" "pubsub_uses_key" {
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.pubsub_agent
}

resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project
  name                       = "${var.name}-dead-letter-sub"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  # Nobody pulls this subscription until something goes wrong; without this Pub/Sub deletes
  # it after 31 idle days, and dead letters published after that are lost.
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "gcs_publishes" {
  project = var.project
  topic   = google_pubsub_topic.events.id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_notification" "objects" {
  bucket             = var.bucket_name
  payload_format     = "JSON_API_V1"
  topic              = google_pubsub_topic.events.id
  event_types        = ["OBJECT_FINALIZE", "OBJECT_DELETE", "OBJECT_ARCHIVE", "OBJECT_METADATA_UPDATE"]
  object_name_prefix = var.object_name_prefix
  depends_on         = [google_pubsub_topic_iam_member.gcs_publishes]
}

resource "google_service_account" "function" {
  project      = var.project
  account_id   = "${var.name}-fn"
  display_name = "syncd event function"
}

resource "google_service_account" "invoker" {
  project      = var.project
  account_id   = "${var.name}-push"
  display_name = "Pub/Sub push to the syncd function"
}

resource "google_secret_manager_secret_iam_member" "function_reads_catalog_url" {
  project   = var.project
  secret_id = var.catalog_url_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}

# The archive syncd deploy package gcp builds, named by its content: a new build is a new
# object, so the function is redeployed exactly when the code changed.
resource "google_storage_bucket_object" "source" {
  bucket = var.source_archive_bucket
  name   = "${var.name}/syncd-gcp-function-${filemd5(var.package_zip)}.zip"
  source = var.package_zip
}

resource "google_cloudfunctions2_function" "events" {
  project  = var.project
  location = var.region
  name     = var.name

  build_config {
    runtime     = "python311"
    entry_point = local.push ? "on_pubsub_push" : "on_storage_event"
    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    max_instance_count             = 10
    available_memory               = "512M"
    timeout_seconds                = 60
    service_account_email          = google_service_account.function.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    vpc_connector                  = var.vpc_connector
    environment_variables = {
      SYNCD_CONFIG_YAML = var.syncd_config_yaml
    }
    secret_environment_variables {
      key        = "SYNCD_CATALOG_URL"
      project_id = var.project
      secret     = var.catalog_url_secret_id
      version    = "latest"
    }
  }

  dynamic "event_trigger" {
    for_each = local.push ? [] : [1]
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = google_pubsub_topic.events.id
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.invoker.email
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.function_reads_catalog_url]
}

# The push subscription's OIDC identity, or the Eventarc trigger's, invokes the function.
resource "google_cloud_run_service_iam_member" "push_invokes" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.events.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

resource "google_pubsub_subscription" "push" {
  count                = local.push ? 1 : 0
  project              = var.project
  name                 = "${var.name}-push"
  topic                = google_pubsub_topic.events.id
  ack_deadline_seconds = 60

  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = google_cloudfunctions2_function.events.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.invoker.email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }
}

# The Pub/Sub service agent moves undeliverable messages: it must publish to the dead-letter
# topic and acknowledge on the push subscription.
resource "google_pubsub_topic_iam_member" "agent_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.id
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks" {
  count        = local.push ? 1 : 0
  project      = var.project
  subscription = google_pubsub_subscription.push[0].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
