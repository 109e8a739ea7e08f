package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cryptvol/cryptvol/internal/keyscan"
	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"
	"github.com/ovh/kmip-go/payloads"
)

// scanKeys fetches the keys named before "--" and searches every regular
// file under the paths after it for their bytes in keyscan's forms. The
// keys stay in this process's memory and are zeroed before it exits.
func scanKeys(ctx context.Context, c *kmipclient.Client, args []string) int {
	sep := slices.Index(args, "--")
	if sep < 1 || sep == len(args)-1 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	ids, paths := args[:sep], args[sep+1:]
	var pats [][]byte
	defer func() {
		for _, p := range pats {
			clear(p)
		}
	}()
	for _, id := range ids {
		resp, refused, err := ask(ctx, c, &payloads.GetRequestPayload{UniqueIdentifier: id})
		if err == nil && refused != nil {
			err = refused
		}
		var k []byte
		if err == nil {
			if sk, ok := resp.(*payloads.GetResponsePayload).Object.(*kmip.SymmetricKey); ok {
				k, err = sk.KeyMaterial()
			} else {
				err = fmt.Errorf("not a symmetric key")
			}
		}
		if err != nil || len(k) == 0 {
			fmt.Fprintf(os.Stderr, "key-state: cannot fetch key %s to scan for: %v\n", id, err)
			return 3
		}
		pats = append(pats, keyscan.Patterns(k)...)
		clear(k)
	}
	files, size := 0, int64(0)
	var hits []string
	for _, root := range paths {
		// A block device named as a PATH is read whole (the lab's shared disk); under a directory only regular
		// files are. Vanished or unreadable entries (pseudo-files under /run, sockets) are not storage.
		if fi, err := os.Stat(root); err == nil && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0 {
			n, hit, err := keyscan.File(root, pats)
			if err != nil {
				fmt.Fprintf(os.Stderr, "key-state: %v\n", err)
				return 3
			}
			files++
			size += n
			if hit {
				hits = append(hits, root)
			}
			continue
		}
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			n, hit, err := keyscan.File(p, pats)
			if err != nil {
				return nil
			}
			files++
			size += n
			if hit {
				hits = append(hits, p)
			}
			return nil
		})
	}
	held := ""
	if len(hits) > 0 {
		held = ": " + strings.Join(hits, " ")
	}
	fmt.Printf("scanned %d files (%d bytes) under %s for %d keys: %d hold key material%s\n",
		files, size, strings.Join(paths, " "), len(ids), len(hits), held)
	if len(hits) > 0 {
		return 1
	}
	return 0
}
