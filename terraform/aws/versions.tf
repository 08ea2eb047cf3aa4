terraform {
  required_version = ">= 1.5.0, < 2.0.0"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # logging_config on functions and scaling_config on SQS mappings need 5.x.
      version = ">= 5.38.0, < 6.0.0"
    }
  }
}
