terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.40 and up, not 4.0: `source_resource_id` on azurerm_eventgrid_system_topic first
      # appears in v4.40.0 (hashicorp/terraform-provider-azurerm#30338; 4.0-4.39 only know
      # `source_arm_resource_id`, which 5.0 removes).
      version = "~> 4.40"
    }
  }
}
