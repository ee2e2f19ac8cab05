// The one storage account: the Functions host's state and the Durable Functions task hub
// (blob, queue and table, reached with the app's identity), the product's containers
// (segments, exports, export-runs, export-state) and the Flex Consumption deployment
// package container. Shared key access is off, so only Entra ID identities with a data
// role can read or write; no account key or SAS is usable.
param name string
param location string
param tags object = {}
param skuName string = 'Standard_GRS'
@description('Blob containers to create, all private.')
param containerNames array
@description('Days a deleted blob or container can be restored (a mistaken upload or delete of a segment, a report).')
param deleteRetentionDays int = 7
@description('Log Analytics workspace receiving the blob service\'s access log (who read, wrote or deleted what).')
param logAnalyticsWorkspaceId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: no virtual network in this template, so the app (Flex Consumption without VNet integration) and operators reach the account over its public endpoint; shared keys are off, so every request needs an Entra ID identity holding a data role
  // checkov:skip=CKV_AZURE_59: public network access is needed without a virtual network (see CKV_AZURE_35); anonymous and key access are both off
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    isLocalUserEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

// Who read, wrote or deleted which blob: segments hold personal data, and with public
// network access on, this log is how an access is traced (the task hub's own traffic
// is in it too, a cost to weigh against the workspace's retention).
resource blobAccess 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'blob-access-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
