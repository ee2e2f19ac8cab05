// The Function App on a Flex Consumption plan (FC1), Python 3.11, running as its
// user-assigned identity. The deployment package, the host's storage (AzureWebJobsStorage,
// the Durable task hub), Key Vault and Application Insights are all reached with that
// identity: the app settings hold endpoints and the identity's client id, never a key.
param name string
param planName string
param location string
param tags object = {}
@description('azd service name (azure.yaml) this app is deployed as.')
param serviceName string = 'api'
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param keyVaultUrl string
param exportSchedule string
param maximumInstanceCount int = 100
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is offered only in some regions and this template deploys to any Flex region; an interrupted run resumes from its chunk checkpoints
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the HTTP API (run now, run status, definitions) is called from outside Azure; every route needs a function key, and no virtual network exists to keep it private
  // checkov:skip=CKV_AZURE_17: callers authenticate with function keys (and App Service authentication when enabled); requiring client certificates would lock out the automations that start runs
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on demand by design; work on a lost instance is retried by Durable Functions from its checkpoints
  // checkov:skip=CKV_AZURE_213: there is no unauthenticated route to probe (every route needs a function key); the Flex Consumption platform replaces failed instances and Durable Functions retries their activities
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Identity-based settings only (shared/settings.py reads them). The Application
      // Insights connection string is an instrumentation key plus ingestion endpoints, not a
      // credential: with local auth off, ingestion also needs the identity (AUTHENTICATION_STRING).
      appSettings: [
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        { name: 'AzureWebJobsStorage__blobServiceUri', value: storage.properties.primaryEndpoints.blob }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: storage.properties.primaryEndpoints.queue }
        { name: 'AzureWebJobsStorage__tableServiceUri', value: storage.properties.primaryEndpoints.table }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
        { name: 'AZURE_CLIENT_ID', value: identityClientId }
        { name: 'KEY_VAULT_URL', value: keyVaultUrl }
        { name: 'EXPORT_SCHEDULE', value: exportSchedule }
        // Activities are synchronous and run on the Python worker's thread pool, whose default
        // size follows the CPU count; 16 threads let host.json's 8 concurrent activities run
        // while HTTP requests are still served.
        { name: 'PYTHON_THREADPOOL_THREAD_COUNT', value: '16' }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No basic (user name and password) publishing: FTP is off and deployments to the SCM
// site need an Entra ID token, which azd and `func azure functionapp publish` use.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
