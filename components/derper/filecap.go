// filecap gives a file the capability set "cap_net_bind_service=+ep", as libcap's
// `setcap cap_net_bind_service=+ep FILE` does, with nothing but Go's standard library: the build
// stage needs no package manager (docs/guide/what-derper-can-touch.md).
//
// The xattr is a version-2 vfs_cap_data, little endian: magic_etc (revision 2 | effective flag),
// then permitted and inheritable for capabilities 0-31 and 32-63 (Linux
// include/uapi/linux/capability.h; docs/upstream/capabilities.md#file-capabilities).
// CAP_NET_BIND_SERVICE is capability 10. Version 2 has no root uid: it holds in every user
// namespace, as a capability set by root of the build container should.
//
// Usage: go run filecap.go FILE   (as root, which has CAP_SETFCAP in a Docker build step)
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
)

const (
	xattrName            = "security.capability"
	vfsCapRevision2      = 0x02000000
	vfsCapFlagsEffective = 0x000001
	capNetBindService    = 10
)

func netBindService() []byte {
	words := []uint32{
		vfsCapRevision2 | vfsCapFlagsEffective,
		1 << capNetBindService, 0, // capabilities 0-31: permitted, inheritable
		0, 0, // capabilities 32-63
	}
	var buf bytes.Buffer
	for _, w := range words {
		binary.Write(&buf, binary.LittleEndian, w)
	}
	return buf.Bytes()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: filecap FILE")
		os.Exit(2)
	}
	path, want := os.Args[1], netBindService()
	if err := syscall.Setxattr(path, xattrName, want, 0); err != nil {
		fmt.Fprintf(os.Stderr, "filecap: cannot set %s on %s: %v\n", xattrName, path, err)
		os.Exit(1)
	}
	got := make([]byte, 64)
	n, err := syscall.Getxattr(path, xattrName, got)
	if err != nil || !bytes.Equal(got[:n], want) {
		fmt.Fprintf(os.Stderr, "filecap: %s on %s reads back %x (%v), want %x\n", xattrName, path, got[:n], err, want)
		os.Exit(1)
	}
	fmt.Printf("filecap: %s = cap_net_bind_service=ep\n", path)
}
