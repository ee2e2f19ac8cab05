// Key Vault for the connections' credentials (one JSON secret per connection, see the
// README's Secrets section). Access is by Azure RBAC only (no access policies): the app's
// identity reads secrets (Key Vault Secrets User), the deploying user may set them
// (Key Vault Secrets Officer), both granted on this vault alone in rbac.bicep.
// Deleted secrets and the vault itself stay recoverable for 90 days, and purge protection
// means nobody, not even an owner, can destroy them sooner.
param name string
param location string
param tags object = {}
@description('Log Analytics workspace receiving the vault\'s audit log: every secret read or write, by whom.')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: no virtual network in this template: the app (Flex Consumption without VNet integration) is not a trusted service and reaches the vault over its public endpoint; access is by Azure RBAC on this vault only
  // checkov:skip=CKV_AZURE_189: public network access is needed without a virtual network (see CKV_AZURE_109); access is by Azure RBAC on this vault only
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Who read or changed a connection's credentials, and when: the vault's audit events.
resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
