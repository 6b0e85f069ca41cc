module github.com/wolfpack-ha/wolfpack

go 1.26
