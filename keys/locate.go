package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
	"github.com/sirupsen/logrus"
)

// Locate returns the ids of all objects named name, in the server's order.
// It is slow on a server that holds many objects: volumes store their key
// id and Locate serves recovery only.
func (m *KMIP) Locate(ctx context.Context, name string) ([]string, error) {
	op := fmt.Sprintf("locate keys named %q", name)
	if err := validateText("name", name); err != nil {
		return nil, m.wrap(op, err)
	}
	var ids []string
	err := m.run(ctx, op, func(ctx context.Context) error {
		var err error
		ids, err = m.locate(ctx, name, false)
		return err
	})
	return ids, err
}

// locate lists the ids of objects named name; keysOnly restricts it to
// symmetric keys.
func (m *KMIP) locate(ctx context.Context, name string, keysOnly bool) ([]string, error) {
	resp, err := callT[*payloads.LocateResponsePayload](ctx, m, locateRequest(name, keysOnly))
	if err != nil {
		return nil, err
	}
	return resp.UniqueIdentifier, nil
}

func locateRequest(name string, keysOnly bool) *payloads.LocateRequestPayload {
	attrs := []kmip.Attribute{{
		AttributeName:  kmip.AttributeNameName,
		AttributeValue: kmip.Name{NameValue: name, NameType: kmip.NameTypeUninterpretedTextString},
	}}
	if keysOnly {
		attrs = append(attrs, kmip.Attribute{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeSymmetricKey})
	}
	return &payloads.LocateRequestPayload{Attribute: attrs}
}

type candidate struct {
	id      string
	state   kmip.State
	initial time.Time
}

// adopt applies Create's rule (see Create) to the keys named name and
// returns the id to use, or "" when there is none. justCreated is the id of
// a key this call has just made and activated: if it is the only one, no
// further round trip is needed.
func (m *KMIP) adopt(ctx context.Context, name, justCreated string) (string, error) {
	ids, err := m.locate(ctx, name, true)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", nil
	}
	if len(ids) == 1 && ids[0] == justCreated {
		return justCreated, nil
	}
	var cands []candidate
	for _, id := range ids {
		resp, err := callT[*payloads.GetAttributesResponsePayload](ctx, m, &payloads.GetAttributesRequestPayload{
			UniqueIdentifier: id,
			AttributeName:    []kmip.AttributeName{kmip.AttributeNameState, kmip.AttributeNameInitialDate},
		})
		if errors.Is(err, ErrNotFound) {
			continue // destroyed since Locate
		}
		if err != nil {
			return "", fmt.Errorf("attributes of key %q: %w", id, err)
		}
		c := candidate{id: id}
		if c.state, err = stateOf(resp); err != nil {
			return "", fmt.Errorf("key %q: %w", id, err)
		}
		for _, a := range resp.Attribute {
			if t, ok := a.AttributeValue.(time.Time); ok && a.AttributeName == kmip.AttributeNameInitialDate {
				c.initial = t
			}
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := a.initial.Compare(b.initial); c != 0 {
			return c
		}
		return compareIDs(a.id, b.id)
	})

	keep := -1
	for i, c := range cands {
		if c.state == kmip.StateActive {
			keep = i
			break
		}
	}
	if keep < 0 {
		for i, c := range cands {
			if c.state == kmip.StatePreActive {
				if _, err := callT[*payloads.ActivateResponsePayload](ctx, m, &payloads.ActivateRequestPayload{UniqueIdentifier: c.id}); err != nil {
					return "", fmt.Errorf("activate pre-active key %q left by an interrupted create: %w", c.id, err)
				}
				m.log.WithFields(logrus.Fields{"op": "create", "key_id": c.id, "key_name": name}).Warn("activated pre-active KMIP key left by an interrupted create")
				keep = i
				break
			}
		}
	}
	var errs []error
	for i, c := range cands {
		if i == keep {
			continue
		}
		l := m.log.WithFields(logrus.Fields{"op": "create", "key_id": c.id, "key_name": name, "state": ttlv.EnumStr(c.state)})
		if keep >= 0 {
			l = l.WithField("kept_key_id", cands[keep].id)
		}
		l.Warn("destroying extra KMIP key with the same name")
		if _, err := m.destroy(ctx, c.id); err != nil {
			errs = append(errs, fmt.Errorf("destroy extra key %q: %w", c.id, err))
		}
	}
	// Until the extras are gone the name is ambiguous; the caller retries.
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if keep < 0 {
		return "", nil
	}
	return cands[keep].id, nil
}

// compareIDs orders ids numerically when both are decimal numbers (PyKMIP
// hands out "1", "2", ...), else as strings.
func compareIDs(a, b string) int {
	if isDigits(a) && isDigits(b) {
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
	}
	return cmp.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Names returns the name of every symmetric key this client's identity can
// see, by id: one Locate, then every key's Name attributes in one batched
// request. For finding the keys of a volume name, whose key names are
// unique per create (cryptvol/VG_UUID/NAME/NONCE), where Locate by name
// cannot help.
func (m *KMIP) Names(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := m.run(ctx, "list key names", func(ctx context.Context) error {
		loc, err := callT[*payloads.LocateResponsePayload](ctx, m, &payloads.LocateRequestPayload{Attribute: []kmip.Attribute{
			{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeSymmetricKey},
		}})
		if err != nil || len(loc.UniqueIdentifier) == 0 {
			return err
		}
		all, errs, err := m.attributesOf(ctx, loc.UniqueIdentifier, kmip.AttributeNameName)
		if err != nil {
			return err
		}
		for i, attrs := range all {
			if errs[i] != nil {
				continue // destroyed between Locate and GetAttributes
			}
			for _, a := range attrs.Attribute {
				if n, ok := a.AttributeValue.(kmip.Name); ok {
					out[attrs.UniqueIdentifier] = append(out[attrs.UniqueIdentifier], n.NameValue)
				}
			}
		}
		return nil
	})
	return out, err
}

// attributesOf asks for the attributes names of every key of ids in one
// batched request. A key whose answer was the server's refusal has its
// error in errs (its attributes nil); err is the request failing.
func (m *KMIP) attributesOf(ctx context.Context, ids []string, names ...kmip.AttributeName) (attrs []*payloads.GetAttributesResponsePayload, errs []error, err error) {
	pls := make([]kmip.OperationPayload, 0, len(ids))
	for _, id := range ids {
		pls = append(pls, &payloads.GetAttributesRequestPayload{UniqueIdentifier: id, AttributeName: names})
	}
	items, err := m.batch(ctx, pls...)
	if err != nil {
		return nil, nil, err
	}
	attrs, errs = make([]*payloads.GetAttributesResponsePayload, len(items)), make([]error, len(items))
	for i := range items {
		attrs[i], errs[i] = result[*payloads.GetAttributesResponsePayload](&items[i])
	}
	return attrs, errs, nil
}
