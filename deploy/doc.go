// Package deploy holds no code: its tests render deploy/kubernetes with
// kustomize, decode every object strictly into the Kubernetes API types, and
// check the manifests, container builds and compose file against the code.
package deploy
