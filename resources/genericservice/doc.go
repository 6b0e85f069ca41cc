// Package genericservice is the generic_service resource type: a systemd
// unit started, stopped and watched through systemd's D-Bus API, on its
// private socket /run/systemd/private or else the system bus
// (docs/resources.md).
package genericservice
