// Package check holds the test of the Kubernetes manifests in deploy/k8s:
// every object decodes strictly into the k8s.io/api types, and the objects'
// cross-references (selectors, service names, secret keys, ports, mounts,
// flags naming files and services) agree. It is a module of its own so that
// the main module does not depend on k8s.io. Run it with
//
//	cd deploy/k8s/check && go test ./...
package check
