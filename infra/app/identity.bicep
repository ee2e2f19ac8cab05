// The Function App's user-assigned identity: what it reaches storage, Key Vault and
// Application Insights with. Its roles are granted in rbac.bicep, one resource each.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
