// Package vip adds and removes a virtual server's IP address: a secondary
// IPv4 address with a label, or an IPv6 address without the kernel's DAD
// delay (IFA_F_NODAD) once announce.Probe found it free, on the interface
// named or on the one whose subnet holds it, found from the routing table
// as Pacemaker's IPaddr2 (findif) does. An address already on another
// interface of the host is refused.
package vip
