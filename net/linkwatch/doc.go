// Package linkwatch reports, from a netlink subscription (rtnetlink
// RTMGRP_LINK and the address groups), what makes a virtual address
// unreachable on its interface: carrier lost, the link set down or deleted,
// the address removed. A resource fails on the event instead of finding out
// at its next poll.
package linkwatch
