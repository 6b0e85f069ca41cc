// Package ocf is the adapter that runs OCF resource agents
// (/usr/lib/ocf/resource.d/PROVIDER/TYPE) unchanged, as Pacemaker's
// executor runs them (OCF Resource Agent API 1.1): the resources of a
// resourcetype whose agent is "ocf" (docs/resources.md, "OCF resource
// agents").
package ocf
