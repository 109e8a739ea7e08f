// Command key-state tells the lab's tests and the demo whether a KMIP key can
// still be fetched, with its state and length, never its bytes; it counts
// the identity's objects and scans files for a key's bytes. It is a client of
// its own (kmip-go's kmipclient, not the plugin's keys package), so a fault
// in the plugin's KMIP code cannot hide from it. It is Go, not a PyKMIP
// script, because a PyKMIP script's imports alone (sqlalchemy through
// kmip.pie) cost the lab guest's emulated CPU on every call, and an
// end-to-end part makes about 13 calls.
//
//	key-state KEY_ID                       exit 0: fetchable (prints state and length); 1: the server refuses it
//	key-state --gone KEY_ID                exit 0: the server refuses it (destroyed, unknown); 1: still fetchable
//	key-state --count                      prints how many objects the identity can locate
//	key-state --keys                       prints the ids of the symmetric keys the identity can locate, one a
//	                                       line (the volumes' keys, not the audit trail's Opaque Object heads)
//	key-state --scan KEY_ID... -- PATH...  fetches the keys and searches every regular file under the PATHs (and a
//	                                       block device named as one) for their bytes (raw, hex, base64); exit 1
//	                                       naming any file that holds one
//
// Exit 2: usage; 3: the server could not be asked (connection, TLS, protocol),
// which is never taken for "not fetchable". Reads CRYPTVOL_KMIP_ENDPOINT,
// _CA, _CERT, _KEY and _SERVER_NAME, as scripts/kmip/dev-server's env file
// sets them. Used through scripts/kmip/key-state (built by make lab-bins).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
)

const usage = "usage: key-state KEY_ID | --gone KEY_ID | --count | --keys | --scan KEY_ID... -- PATH..."

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	gone := len(args) == 2 && args[0] == "--gone"
	if len(args) == 0 || (len(args) > 1 && args[0] != "--scan" && !gone) {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "key-state: %v\n", err)
		return 3
	}
	defer c.Close()
	switch args[0] {
	case "--count":
		return count(ctx, c)
	case "--keys":
		return symmetricKeys(ctx, c)
	case "--scan":
		return scanKeys(ctx, c, args[1:])
	case "--gone":
		// Only the server's refusal is "gone"; not reaching it is not.
		switch rc := state(ctx, c, args[1]); rc {
		case 0, 1:
			return 1 - rc
		default:
			return rc
		}
	}
	return state(ctx, c, args[0])
}

func dial(ctx context.Context) (*kmipclient.Client, error) {
	env := func(n string) string { return os.Getenv("CRYPTVOL_KMIP_" + n) }
	for _, n := range []string{"ENDPOINT", "CA", "CERT", "KEY"} {
		if env(n) == "" {
			return nil, fmt.Errorf("CRYPTVOL_KMIP_%s is not set (source scripts/kmip/dev-server's env file)", n)
		}
	}
	name := env("SERVER_NAME")
	if name == "" {
		host, _, err := net.SplitHostPort(env("ENDPOINT"))
		if err != nil {
			return nil, fmt.Errorf("CRYPTVOL_KMIP_ENDPOINT: %w", err)
		}
		name = host
	}
	return kmipclient.DialContext(ctx, env("ENDPOINT"),
		kmipclient.WithRootCAFile(env("CA")),
		kmipclient.WithClientCertFiles(env("CERT"), env("KEY")),
		kmipclient.WithServerName(name),
		kmipclient.WithKmipVersions(kmip.V1_4, kmip.V1_3, kmip.V1_2, kmip.V1_1, kmip.V1_0),
		// As the plugin does (keys/conn.go): PyKMIP refuses a request stamped
		// later than its clock.
		kmipclient.WithMiddlewares(func(next kmipclient.Next, ctx context.Context, req *kmip.RequestMessage) (*kmip.ResponseMessage, error) {
			req.Header.TimeStamp = nil
			return next(ctx, req)
		}),
	)
}

// ask sends one operation; a failed operation (the server's refusal) is
// refused, anything else that fails is err.
func ask(ctx context.Context, c *kmipclient.Client, pl kmip.OperationPayload) (resp kmip.OperationPayload, refused, err error) {
	items, err := c.Batch(ctx, pl)
	if err != nil {
		return nil, nil, err
	}
	if e := items[0].Err(); e != nil {
		return nil, e, nil
	}
	return items[0].ResponsePayload, nil, nil
}

func state(ctx context.Context, c *kmipclient.Client, id string) int {
	resp, refused, err := ask(ctx, c, &payloads.GetRequestPayload{UniqueIdentifier: id})
	if err == nil && refused == nil {
		got, ok := resp.(*payloads.GetResponsePayload)
		var attrs kmip.OperationPayload
		if ok {
			attrs, refused, err = ask(ctx, c, &payloads.GetAttributesRequestPayload{UniqueIdentifier: id,
				AttributeName: []kmip.AttributeName{kmip.AttributeNameState}})
		}
		if err == nil && refused == nil {
			st := "unknown state"
			if a, ok := attrs.(*payloads.GetAttributesResponsePayload); ok {
				for _, at := range a.Attribute {
					if s, ok := at.AttributeValue.(kmip.State); ok {
						st = ttlv.EnumStr(s)
					}
				}
			}
			n := -1
			if sk, ok := got.Object.(*kmip.SymmetricKey); ok {
				if b, e := sk.KeyMaterial(); e == nil {
					n = len(b)
					clear(b)
				}
			}
			fmt.Printf("key %s: %s, %d bytes\n", id, st, n)
			return 0
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "key-state: key %s: %v\n", id, err)
		return 3
	}
	fmt.Printf("key %s: not fetchable (%s)\n", id, firstLine(refused.Error(), 200))
	return 1
}

// locateAll returns the ids of every object the identity can locate; an
// error is printed, and ok is false.
func locateAll(ctx context.Context, c *kmipclient.Client) (ids []string, ok bool) {
	resp, refused, err := ask(ctx, c, &payloads.LocateRequestPayload{})
	if err == nil && refused != nil {
		err = refused
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "key-state: locate: %v\n", err)
		return nil, false
	}
	return resp.(*payloads.LocateResponsePayload).UniqueIdentifier, true
}

func count(ctx context.Context, c *kmipclient.Client) int {
	ids, ok := locateAll(ctx, c)
	if !ok {
		return 3
	}
	fmt.Println(len(ids))
	return 0
}

// symmetricKeys prints the ids of the located objects that are symmetric
// keys: one Locate, then one batch asking each object's type, so the
// audit trail's heads (Opaque Objects) are told apart without relying on a
// server's Locate filters.
func symmetricKeys(ctx context.Context, c *kmipclient.Client) int {
	ids, ok := locateAll(ctx, c)
	if !ok {
		return 3
	}
	if len(ids) == 0 {
		return 0
	}
	pls := make([]kmip.OperationPayload, len(ids))
	for i, id := range ids {
		pls[i] = &payloads.GetAttributesRequestPayload{UniqueIdentifier: id,
			AttributeName: []kmip.AttributeName{kmip.AttributeNameObjectType}}
	}
	items, err := c.Batch(ctx, pls...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "key-state: object types: %v\n", err)
		return 3
	}
	for i, it := range items {
		if e := it.Err(); e != nil {
			// Destroyed between the Locate and the batch: not a key any more.
			continue
		}
		a, ok := it.ResponsePayload.(*payloads.GetAttributesResponsePayload)
		if !ok {
			continue
		}
		for _, at := range a.Attribute {
			if t, ok := at.AttributeValue.(kmip.ObjectType); ok && t == kmip.ObjectTypeSymmetricKey {
				fmt.Println(ids[i])
			}
		}
	}
	return 0
}

func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n]
	}
	return s
}
