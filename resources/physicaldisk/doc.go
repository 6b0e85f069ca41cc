// Package physicaldisk is the physical_disk resource type: a data LUN
// (not the quorum LUN) held with a SCSI-3 persistent reservation that
// fences its previous owner (SPC-4 5.12), a filesystem on it checked and
// mounted on the owner (docs/resources.md, "physical_disk").
package physicaldisk
