// The resource group's content; main.bicep makes the group and passes the parameters through.
param location string
param tags object
param resourceToken string
param principalId string
param principalType string
param computeMode string
param gpuVmSize string
param cpuVmSize string
param gpuMaxNodes int
param cpuMaxNodes int
param mlStorageIdentityOnly bool
param landingContainer string
param notifyEventGrid bool
param serveEnabled bool
param serveInstanceType string

var runsTable = 'runs'
var settleQueue = 'retrain-settle'
var deploymentContainer = 'app-package'
// Each data version's files, copied from landing by the app and never written again.
var datasetsContainer = 'datasets'
// Job events Event Grid gave up on (after its retries), kept for a look; the timer records the runs.
var deadLetterContainer = 'job-events-deadletter'

// Two identities: the Function App's, and the one Azure ML jobs read data as.
resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-func-${resourceToken}'
  location: location
  tags: tags
}

resource computeIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-mlcompute-${resourceToken}'
  location: location
  tags: tags
}

// serveEnabled: the identity the online endpoint runs as (pulls the image, reads the model).
resource serveIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (serveEnabled) {
  name: 'id-mlserve-${resourceToken}'
  location: location
  tags: tags
}

module dataStorage 'modules/storage.bicep' = {
  name: 'data-storage'
  params: {
    name: 'stdata${resourceToken}'
    location: location
    tags: tags
    containers: [landingContainer, datasetsContainer, deadLetterContainer]
    queues: [settleQueue]
    tables: [runsTable]
  }
}

module hostStorage 'modules/storage.bicep' = {
  name: 'host-storage'
  params: {
    name: 'stfunc${resourceToken}'
    location: location
    tags: tags
    containers: [deploymentContainer]
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module ml 'modules/ml-workspace.bicep' = {
  name: 'ml-workspace'
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appInsightsId: monitoring.outputs.appInsightsId
    computeIdentityId: computeIdentity.id
    computeMode: computeMode
    cpuVmSize: cpuVmSize
    gpuVmSize: gpuVmSize
    cpuMaxNodes: cpuMaxNodes
    gpuMaxNodes: gpuMaxNodes
    mlStorageIdentityOnly: mlStorageIdentityOnly
  }
}

// Run notifications (optional): CloudEvents in, for Logic Apps, Teams or e-mail subscribers.
resource notifyTopic 'Microsoft.EventGrid/topics@2022-06-15' = if (notifyEventGrid) {
  // checkov:skip=CKV_AZURE_193:the Function App (no VNet in this template) publishes over the public endpoint; Entra ID guards it, local auth is off
  // checkov:skip=CKV_AZURE_192:checkov reads no properties of a conditional (if) resource; disableLocalAuth is true below
  // checkov:skip=CKV_AZURE_191:checkov reads no properties of a conditional (if) resource; the identity is system-assigned below
  name: 'evgt-notify-${resourceToken}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned' // for delivery to identity-based subscribers
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: functionIdentity.id
    identityClientId: functionIdentity.properties.clientId
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    deploymentContainer: deploymentContainer
    dataBlobEndpoint: dataStorage.outputs.blobEndpoint
    dataQueueEndpoint: dataStorage.outputs.queueEndpoint
    dataTableEndpoint: dataStorage.outputs.tableEndpoint
    landingContainer: landingContainer
    datasetsContainer: datasetsContainer
    runsTable: runsTable
    settleQueue: settleQueue
    appInsightsConnectionString: monitoring.outputs.connectionString
    workspaceName: ml.outputs.workspaceName
    cpuCompute: ml.outputs.cpuCompute
    gpuCompute: ml.outputs.gpuCompute
    gpuInstanceType: gpuVmSize
    mlEnvironment: ml.outputs.environment
    notifyEventGridEndpoint: notifyEventGrid ? notifyTopic.properties.endpoint : ''
    serveEndpoint: serveEnabled ? 'fashion-${resourceToken}' : ''
    serveIdentityId: serveEnabled ? serveIdentity.id : ''
    serveInstanceType: serveInstanceType
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    functionPrincipalId: functionIdentity.properties.principalId
    computePrincipalId: computeIdentity.properties.principalId
    principalId: principalId
    principalType: principalType
    dataStorageName: dataStorage.outputs.name
    landingContainer: landingContainer
    datasetsContainer: datasetsContainer
    hostStorageName: hostStorage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    workspaceName: ml.outputs.workspaceName
    workspacePrincipalId: ml.outputs.workspacePrincipalId
    keyVaultName: ml.outputs.keyVaultName
    mlStorageName: ml.outputs.storageName
    registryName: ml.outputs.registryName
    mlStorageIdentityOnly: mlStorageIdentityOnly
    notifyTopicName: notifyEventGrid ? notifyTopic.name : ''
    jobEventsTopicPrincipalId: jobEventsTopic.identity.principalId
    deadLetterContainer: deadLetterContainer
    serveEnabled: serveEnabled
    serveIdentityName: serveEnabled ? serveIdentity.name : ''
    servePrincipalId: serveEnabled ? serveIdentity.properties.principalId : ''
  }
}

// BlobCreated events of the data account. The subscription to the blob trigger's webhook is
// added by infra/hooks/postdeploy.sh (its URL carries a key that exists only after deployment).
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${resourceToken}'
  location: location
  tags: tags
  properties: {
    source: dataStorage.outputs.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// Azure ML's job events (RunStatusChanged, in preview) of the workspace. The subscription to the
// job_events function is added by infra/hooks/postdeploy.sh (the function and its Event Grid key
// exist only after deployment); it dead-letters to the data account as this topic's identity.
resource jobEventsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-ml-${resourceToken}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned' // writes dead-lettered events to the dead-letter container
  }
  properties: {
    source: ml.outputs.workspaceId
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppUrl string = functionApp.outputs.url
output dataStorageAccount string = dataStorage.outputs.name
output systemTopicName string = systemTopic.name
output jobEventsTopicName string = jobEventsTopic.name
output dataStorageId string = dataStorage.outputs.id
output deadLetterContainer string = deadLetterContainer
output workspaceName string = ml.outputs.workspaceName
output environment string = ml.outputs.environment
output cpuCompute string = ml.outputs.cpuCompute
output gpuCompute string = ml.outputs.gpuCompute
