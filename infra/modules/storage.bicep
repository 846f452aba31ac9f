// A storage account reached only with Entra ID (no account key, no anonymous blob access),
// with the containers, queues and tables it is asked for.
param name string
param location string
param tags object
param containers array = []
param queues array = []
param tables array = []
@description('false: Entra ID only. true only where a service that uses the account cannot do without its key.')
param allowSharedKeyAccess bool = false

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' } // checkov:skip=CKV_AZURE_206:LRS keeps a retraining sandbox cheap; every batch can be uploaded again
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled' // checkov:skip=CKV_AZURE_59:uploads, Event Grid and the Functions host reach it over the internet with Entra ID; no VNet in this template
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow' // checkov:skip=CKV_AZURE_35:see CKV_AZURE_59: Entra ID, not the network, guards it
    }
  }
}

// The services as top-level children (parent:), not nested, so the offline type check reads them.
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container
  properties: { publicAccess: 'None' }
}]

resource storageQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in queues: {
  parent: queueService
  name: queue
}]

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tables: {
  parent: tableService
  name: table
}]

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
