package keys

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
	"github.com/sirupsen/logrus"
)

// NodeGroup is the KMIP Object Group of the keys of the volumes a node
// made (Config.Group for its own creates), so that `cryptvol decommission
// NODE` can find every one of them on the server without the node. A key
// stays in its volume's maker's group whichever host makes it: in a shared
// group a rotation on another host passes the maker's group to Create
// (volume/rotate.go), so decommissioning one host never finds the keys of
// volumes the others made.
func NodeGroup(node string) string { return "cryptvol-node:" + node }

// KeyInfo describes a key for an administrator: never its material.
type KeyInfo struct {
	ID    string   `json:"id"`
	Names []string `json:"names,omitempty"`
	State string   `json:"state,omitempty"`
}

// Group lists the symmetric keys of Object Group group that this client's
// identity may locate, with their names and states: one Locate, then every
// key's attributes in one batched request. A key destroyed in between is
// left out.
func (m *KMIP) Group(ctx context.Context, group string) ([]KeyInfo, error) {
	op := fmt.Sprintf("list keys of object group %q", group)
	if err := validateText("object group", group); err != nil {
		return nil, m.wrap(op, err)
	}
	var out []KeyInfo
	err := m.run(ctx, op, func(ctx context.Context) error {
		loc, err := callT[*payloads.LocateResponsePayload](ctx, m, &payloads.LocateRequestPayload{Attribute: []kmip.Attribute{
			{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeSymmetricKey},
			{AttributeName: kmip.AttributeNameObjectGroup, AttributeValue: group},
		}})
		if err != nil || len(loc.UniqueIdentifier) == 0 {
			return err
		}
		all, errs, err := m.attributesOf(ctx, loc.UniqueIdentifier, kmip.AttributeNameName, kmip.AttributeNameState)
		if err != nil {
			return err
		}
		for i, attrs := range all {
			err := errs[i]
			if errors.Is(err, ErrNotFound) {
				continue
			}
			info := KeyInfo{ID: loc.UniqueIdentifier[i]}
			if err != nil {
				info.State = "unknown: " + err.Error()
				out = append(out, info)
				continue
			}
			for _, a := range attrs.Attribute {
				switch v := a.AttributeValue.(type) {
				case kmip.Name:
					info.Names = append(info.Names, v.NameValue)
				case kmip.State:
					info.State = ttlv.EnumStr(v)
				}
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// Compromise revokes the key for the reason key compromise and destroys it,
// in one ordered batch: unlike a Revoke for cessation of operation, one for
// compromise is accepted in any state (KMIP 1.4 §4.20; PyKMIP's
// _process_revoke), so a key that is Active, Deactivated or already
// Compromised ends destroyed alike. A key that is unknown counts as gone,
// so a decommission that was interrupted can simply be run again.
func (m *KMIP) Compromise(ctx context.Context, id string) (gone bool, err error) {
	op := fmt.Sprintf("revoke (key compromise) and destroy key %q", id)
	if err := validateText("key id", id); err != nil {
		return false, m.wrap(op, err)
	}
	err = m.run(ctx, op, func(ctx context.Context) error {
		now := time.Now().UTC().Truncate(time.Second)
		items, err := m.batch(ctx, &payloads.RevokeRequestPayload{
			UniqueIdentifier:         id,
			RevocationReason:         kmip.RevocationReason{RevocationReasonCode: kmip.RevocationReasonCodeKeyCompromise, RevocationMessage: "cryptvol decommission"},
			CompromiseOccurrenceDate: &now,
		}, &payloads.DestroyRequestPayload{UniqueIdentifier: id})
		if err != nil {
			return err
		}
		rerr, derr := itemError(&items[0]), itemError(&items[1])
		switch {
		case derr == nil:
		case errors.Is(rerr, ErrNotFound) && errors.Is(derr, ErrNotFound):
			gone = true
		case rerr != nil:
			return fmt.Errorf("revoke: %w", rerr)
		default:
			return fmt.Errorf("destroy: %w", derr)
		}
		m.log.WithFields(logrus.Fields{"op": "compromise", "key_id": id, "already_gone": gone}).Info("revoked (key compromise) and destroyed KMIP key")
		return nil
	})
	return gone, err
}

// ValidateNode checks a node name (CRYPTVOL_NODE, `cryptvol decommission
// NODE`): a host name's characters, so that it reads the same in a KMIP
// Object Group, the audit trail and a shell.
func ValidateNode(node string) error {
	if !nodeRE.MatchString(node) {
		return fmt.Errorf("node name %q is not valid (allowed: letters, digits, '.', '_', '-', starting with a letter or digit; at most 63)", node)
	}
	return nil
}

var nodeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ObjectGroups returns the KMIP Object Group of each key of ids that this
// client's identity may read, in one batched request: "" for a key in no
// group, the groups joined by commas for one in several (PyKMIP answers
// each as an Attribute of its own); a key it may not read, or that is
// gone, is left out. What
// `cryptvol report` shows as a volume's node group (NodeGroup), read from
// the server rather than from tags on the storage.
func (m *KMIP) ObjectGroups(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	for _, id := range ids {
		if err := validateText("key id", id); err != nil {
			return nil, m.wrap("read object groups", err)
		}
	}
	err := m.run(ctx, "read object groups", func(ctx context.Context) error {
		all, errs, err := m.attributesOf(ctx, ids, kmip.AttributeNameObjectGroup)
		if err != nil {
			return err
		}
		for i, attrs := range all {
			if errs[i] != nil {
				continue
			}
			var gs []string
			for _, a := range attrs.Attribute {
				if s, ok := a.AttributeValue.(string); ok && a.AttributeName == kmip.AttributeNameObjectGroup {
					gs = append(gs, s)
				}
			}
			out[ids[i]] = strings.Join(gs, ",")
		}
		return nil
	})
	return out, err
}
