// The Azure ML workspace with its dependent resources, the compute clusters (min 0 nodes, so
// they cost nothing while idle) or none for serverless, and the environment of the components,
// registered under a content-derived version so provisioning never rewrites a used version.
param location string
param tags object
param resourceToken string
param appInsightsId string
@description('Resource id of the user-assigned identity the clusters run as (and the workspace carries for serverless jobs).')
param computeIdentityId string
param computeMode string
param cpuVmSize string
param gpuVmSize string
param cpuMaxNodes int
param gpuMaxNodes int
param mlStorageIdentityOnly bool
param environmentName string = 'fashion-mnist-train'
param environmentImage string = 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest'

// The version changes exactly when the conda file or the image does.
var condaFile = loadTextContent('../../components/environment/conda.yaml')
var environmentVersion = uniqueString(condaFile, environmentImage)
var clusters = computeMode == 'clusters'

module mlStorage 'storage.bicep' = {
  name: 'ml-storage'
  params: {
    name: 'stml${resourceToken}'
    location: location
    tags: tags
    allowSharedKeyAccess: !mlStorageIdentityOnly
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // checkov:skip=CKV_AZURE_42:soft delete is on (7 days); purge protection is not, see CKV_AZURE_110
    // checkov:skip=CKV_AZURE_110:a purge-protected vault survives `azd down --purge` for its retention, blocking a redeploy under the same name; it holds no secrets of ours
    // checkov:skip=CKV_AZURE_109:Azure ML reaches it from its own services; RBAC, not the network, guards it (no VNet in this template)
    publicNetworkAccess: 'Enabled' // checkov:skip=CKV_AZURE_189:Azure ML services reach it; RBAC guards it (see CKV_AZURE_109)
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: 'cr${resourceToken}'
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_139:public endpoint: Basic has no private link; pulls need Entra ID (admin user off)
  // checkov:skip=CKV_AZURE_163:vulnerability scanning belongs to Defender for Cloud, a subscription-wide choice
  // checkov:skip=CKV_AZURE_164:content trust needs Premium; the only image is built by Azure ML itself
  // checkov:skip=CKV_AZURE_165:geo-replication needs Premium; an image can be rebuilt from conda.yaml
  sku: { name: 'Basic' } // Basic: about USD 5 a month; the Premium-only checks below are skipped for it
  // checkov:skip=CKV_AZURE_166:quarantine needs Premium
  // checkov:skip=CKV_AZURE_167:retention policy needs Premium
  // checkov:skip=CKV_AZURE_233:zone redundancy needs Premium
  // checkov:skip=CKV_AZURE_237:dedicated data endpoints need Premium
  properties: {
    adminUserEnabled: false
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2025-06-01' = {
  name: 'mlw-${resourceToken}'
  location: location
  tags: tags
  sku: { name: 'Basic', tier: 'Basic' }
  // checkov:skip=CKV_AZURE_243:a private endpoint needs a VNet, which the serverless Function App and the studio users do not share
  // The system identity reaches the dependent resources (Azure ML grants it its roles); the
  // user-assigned one is the identity serverless jobs run as (ManagedIdentityConfiguration).
  identity: {
    type: 'SystemAssigned,UserAssigned'
    userAssignedIdentities: { '${computeIdentityId}': {} }
  }
  properties: {
    friendlyName: 'Fashion-MNIST retraining'
    storageAccount: mlStorage.outputs.id
    keyVault: keyVault.id
    containerRegistry: registry.id
    applicationInsights: appInsightsId
    publicNetworkAccess: 'Enabled' // checkov:skip=CKV_AZURE_144:the Function App (no VNet in this template) and the studio reach it over the internet with Entra ID
    hbiWorkspace: false
    systemDatastoresAuthMode: mlStorageIdentityOnly ? 'identity' : null
  }
}

var clusterIdentity = {
  type: 'UserAssigned'
  userAssignedIdentities: { '${computeIdentityId}': {} }
}

resource cpuCluster 'Microsoft.MachineLearningServices/workspaces/computes@2025-06-01' = if (clusters) {
  parent: workspace
  name: 'cpu-cluster'
  location: location
  identity: clusterIdentity
  properties: {
    computeType: 'AmlCompute'
    disableLocalAuth: true
    properties: {
      vmSize: cpuVmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled'
      scaleSettings: { minNodeCount: 0, maxNodeCount: cpuMaxNodes, nodeIdleTimeBeforeScaleDown: 'PT5M' }
    }
  }
}

resource gpuCluster 'Microsoft.MachineLearningServices/workspaces/computes@2025-06-01' = if (clusters) {
  parent: workspace
  name: 'gpu-cluster'
  location: location
  identity: clusterIdentity
  properties: {
    computeType: 'AmlCompute'
    disableLocalAuth: true
    properties: {
      vmSize: gpuVmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled'
      scaleSettings: { minNodeCount: 0, maxNodeCount: gpuMaxNodes, nodeIdleTimeBeforeScaleDown: 'PT5M' }
    }
  }
}

// Registered here; Azure ML builds its image on first use, which the postprovision hook
// triggers with a one-minute job so that no retraining run waits for the build.
resource environmentContainer 'Microsoft.MachineLearningServices/workspaces/environments@2025-06-01' = {
  parent: workspace
  name: environmentName
  properties: {
    description: 'The environment prepare_data, train and score run in (components/environment).'
  }

  resource environmentVersionResource 'versions' = {
    name: environmentVersion
    properties: {
      description: 'components/environment/conda.yaml on ${environmentImage}'
      image: environmentImage
      condaFile: condaFile
      osType: 'Linux'
    }
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output workspacePrincipalId string = workspace.identity.principalId
output keyVaultName string = keyVault.name
output storageName string = mlStorage.outputs.name
output registryName string = registry.name
output environment string = '${environmentName}:${environmentVersion}'
output cpuCompute string = clusters ? cpuCluster.name : 'serverless'
output gpuCompute string = clusters ? gpuCluster.name : 'serverless'
