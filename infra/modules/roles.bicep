// Every role assignment `azd up` makes: least privilege, each with its reason (the assignment's
// description, shown in the portal). docs/deploy.md lists the same; tests/infra checks that.
param functionPrincipalId string
param computePrincipalId string
@description('The person (or CI login) running azd; empty: none.')
param principalId string
param principalType string
param dataStorageName string
param landingContainer string
param datasetsContainer string
param hostStorageName string
param appInsightsName string
param workspaceName string
@description('The workspace\'s system-assigned identity.')
param workspacePrincipalId string
param keyVaultName string
param mlStorageName string
param registryName string
param mlStorageIdentityOnly bool
@description('The run notifications topic (notifyEventGrid); empty: none.')
param notifyTopicName string = ''
@description('The workspace\'s job events system topic\'s identity (it dead-letters events).')
param jobEventsTopicPrincipalId string
param deadLetterContainer string
@description('true: serving is on; the online endpoint runs as the identity below.')
param serveEnabled bool = false
param serveIdentityName string = ''
@description('That identity\'s principal (serveEnabled); empty: serving is off.')
param servePrincipalId string = ''

// Built-in role definition ids (the same in every tenant).
var roles = {
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  'Storage Blob Data Reader': '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb'
  'Key Vault Administrator': '00482a5a-887f-4fb3-b363-3b7fe8e74483'
  'AzureML Data Scientist': 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  AcrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  'EventGrid Data Sender': 'd5a91429-5739-47e2-a06b-3470a27159e7'
  'Managed Identity Operator': 'f1a07417-d97a-45cb-824c-7a7467783830'
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource landing 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/${landingContainer}'
}

resource datasets 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/${datasetsContainer}'
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/${deadLetterContainer}'
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2025-06-01' existing = {
  name: workspaceName
}

resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: mlStorageName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

// Only referenced (by the assignments below) when serving is on.
resource serveIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: empty(serveIdentityName) ? 'none' : serveIdentityName
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource notifyTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = if (!empty(notifyTopicName)) {
  name: notifyTopicName
}

// --- the Function App's identity -------------------------------------------------------------

resource funcDataBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, functionPrincipalId, roles['Storage Blob Data Owner'])
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Owner'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'The identity-based blob trigger (its documented role), reading landed batches, and copying each data version into the datasets container.'
  }
}

resource funcDataQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, functionPrincipalId, roles['Storage Queue Data Contributor'])
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Queue Data Contributor'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'The settle queue (send delayed re-checks, consume them in settle_batch) and the triggers\' poison queues.'
  }
}

resource funcDataTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, functionPrincipalId, roles['Storage Table Data Contributor'])
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Table Data Contributor'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'The run ledger (RUNS_TABLE): create, read and update run entities.'
  }
}

resource funcHostBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, functionPrincipalId, roles['Storage Blob Data Owner'])
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Owner'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'AzureWebJobsStorage: host keys, locks, blob receipts, timer state, and the deployment package.'
  }
}

resource funcHostQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, functionPrincipalId, roles['Storage Queue Data Contributor'])
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Queue Data Contributor'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'AzureWebJobsStorage: the host\'s internal queues.'
  }
}

resource funcTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, roles['Monitoring Metrics Publisher'])
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Monitoring Metrics Publisher'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Send telemetry with Entra ID: Application Insights has local auth disabled.'
  }
}

resource funcWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, roles['AzureML Data Scientist'])
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['AzureML Data Scientist'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Register data versions, components and model versions (tagging the champion), submit and read jobs, download output_result.'
  }
}

resource funcMlStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (mlStorageIdentityOnly) {
  name: guid(mlStorage.id, functionPrincipalId, roles['Storage Blob Data Contributor'])
  scope: mlStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Contributor'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Identity-based datastores: upload component code when the app registers a new component version (first use), and download output_result, without an account key.'
  }
}

resource funcNotify 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(notifyTopicName)) {
  name: guid(notifyTopic.id, functionPrincipalId, roles['EventGrid Data Sender'])
  scope: notifyTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['EventGrid Data Sender'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Publish run notifications (CloudEvents) to the topic with Entra ID (local auth is off).'
  }
}

// --- the compute identity (clusters, and serverless jobs through the workspace) --------------

resource computeDatasets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(datasets.id, computePrincipalId, roles['Storage Blob Data Reader'])
  scope: datasets
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Reader'])
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Jobs read the registered data version (a plain https URL into the datasets container) as this identity; nothing else in the data account.'
  }
}

resource computeRegistry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, computePrincipalId, roles.AcrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.AcrPull)
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Clusters running as a user-assigned identity pull the environment image with it.'
  }
}

resource computeMlStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (mlStorageIdentityOnly) {
  name: guid(mlStorage.id, computePrincipalId, roles['Storage Blob Data Contributor'])
  scope: mlStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Contributor'])
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Identity-based datastores: jobs read and write step outputs without an account key.'
  }
}

// --- the workspace's own (system-assigned) identity ----------------------------------------

// The Key Vault uses the RBAC permission model. Azure ML's "Set up authentication between Azure
// Machine Learning and other services" (how-to-identity-based-service-authentication, the
// workspace's role table) requires Key Vault Administrator (data plane) on it: the workspace
// creates, reads and deletes its own secrets (datastore and connection credentials). Scoped to
// this one vault, which holds nothing else; no narrower role is documented as enough.
resource workspaceKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, workspacePrincipalId, roles['Key Vault Administrator'])
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Key Vault Administrator'])
    principalId: workspacePrincipalId
    principalType: 'ServicePrincipal'
    description: 'The workspace keeps its datastore and connection secrets in this RBAC vault: the data-plane role Azure ML documents for it.'
  }
}

// --- the person running azd ------------------------------------------------------------------

resource deployerLanding 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(landing.id, principalId, roles['Storage Blob Data Contributor'])
  scope: landing
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Contributor'])
    principalId: principalId
    principalType: principalType
    description: 'Upload batches with az storage blob upload-batch --auth-mode login (the account takes no key).'
  }
}

// --- the job events system topic's identity ----------------------------------------------------

resource jobEventsDeadLetter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, jobEventsTopicPrincipalId, roles['Storage Blob Data Contributor'])
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Contributor'])
    principalId: jobEventsTopicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid writes the job events it could not deliver to job_events into this one container, and nowhere else.'
  }
}

// --- serving (serveEnabled): the online endpoint's identity ---------------------------------

resource funcServeIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (serveEnabled) {
  name: guid(serveIdentity.id, functionPrincipalId, roles['Managed Identity Operator'])
  scope: serveIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Managed Identity Operator'])
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Create the online endpoint with this identity (attaching a user-assigned identity needs it); on this one identity only.'
  }
}

resource serveRegistry 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (serveEnabled) {
  name: guid(registry.id, servePrincipalId, roles.AcrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.AcrPull)
    principalId: servePrincipalId
    principalType: 'ServicePrincipal'
    description: 'The online deployment pulls the environment image as this identity.'
  }
}

resource serveMlStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (serveEnabled) {
  name: guid(mlStorage.id, servePrincipalId, roles['Storage Blob Data Reader'])
  scope: mlStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles['Storage Blob Data Reader'])
    principalId: servePrincipalId
    principalType: 'ServicePrincipal'
    description: 'The online deployment reads the registered model and its scoring code from the workspace storage.'
  }
}
