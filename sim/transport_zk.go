package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/immune-project/immune/internal/zk"

	"github.com/immune-project/immune/deploy"
	"github.com/immune-project/immune/internal/zkconn"
)

var (
	_ Transport   = (*ZKTransport)(nil)
	_ StateWriter = (*ZKTransport)(nil)
)

// ZKTransport speaks the ZooKeeper protocol: it writes
// /deploys/<service>/<id> (with its groups/ and selftest/ directories, in
// one transaction), groups/<n> and selftest/<instance>, and watches
// verdict and revert.
type ZKTransport struct {
	conn   *zkconn.Conn
	layout deploy.Layout
}

// NewZKTransport writes under layout's deploys root
// (deploy.DefaultLayout when its Deploys is empty).
func NewZKTransport(conn *zkconn.Conn, layout deploy.Layout) *ZKTransport {
	if layout.Deploys == "" {
		layout = deploy.DefaultLayout
	}
	return &ZKTransport{conn: conn, layout: layout}
}

// Create writes the deploy znode and its groups/ and selftest/
// directories in one transaction. An existing deploy with the same id is
// an error.
func (t *ZKTransport) Create(ctx context.Context, rec deploy.DeployRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := t.layout.Deploy(rec.Service, rec.ID)
	if err := rec.Check(p); err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := t.conn.EnsurePath(t.layout.ServiceDeploys(rec.Service)); err != nil {
		return err
	}
	acl := t.conn.ACL()
	_, err = t.conn.Multi(
		&zk.CreateRequest{Path: p, Data: data, Acl: acl},
		&zk.CreateRequest{Path: t.layout.Groups(rec.Service, rec.ID), Acl: acl},
		&zk.CreateRequest{Path: t.layout.SelfTests(rec.Service, rec.ID), Acl: acl},
	)
	if errors.Is(err, zk.ErrNodeExists) {
		// A retry after a lost answer finds its own record: fine.
		old, _, gerr := t.conn.Get(p)
		if gerr == nil && string(old) == string(data) {
			return nil
		}
		return fmt.Errorf("zookeeper create %s: deploy exists: %w", p, ErrRejected)
	}
	if err != nil {
		return fmt.Errorf("zookeeper create %s: %w", p, err)
	}
	return nil
}

// SetState rewrites the deploy znode with rec (its state changed).
func (t *ZKTransport) SetState(ctx context.Context, rec deploy.DeployRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := t.layout.Deploy(rec.Service, rec.ID)
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := t.conn.Set(p, data, -1); err != nil {
		return fmt.Errorf("zookeeper set %s: %w", p, err)
	}
	return nil
}

// StartGroup writes groups/<n>.
func (t *ZKTransport) StartGroup(ctx context.Context, service, id string, g deploy.GroupRecord) error {
	return t.put(ctx, t.layout.Group(service, id, g.Group), g)
}

// SelfTest writes selftest/<instance>.
func (t *ZKTransport) SelfTest(ctx context.Context, service, id string, r deploy.SelfTestRecord) error {
	if !deploy.ValidName(r.Instance) {
		return fmt.Errorf("self test: instance %q is not a valid name: %w", r.Instance, ErrRejected)
	}
	return t.put(ctx, t.layout.SelfTests(service, id)+"/"+r.Instance, r)
}

// put creates p with v's JSON, or overwrites it.
func (t *ZKTransport) put(ctx context.Context, p string, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = t.conn.Create(p, data, 0, t.conn.ACL())
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = t.conn.Set(p, data, -1)
	}
	if err != nil {
		return fmt.Errorf("zookeeper write %s: %w", p, err)
	}
	return nil
}

// Status reads verdict and revert with watches; the channel closes when
// either watch fires (or the session changes), or ctx ends.
func (t *ZKTransport) Status(ctx context.Context, service, id string) (Status, <-chan struct{}, error) {
	var st Status
	session := t.conn.Changed()
	verdict, vw, err := t.read(t.layout.Verdict(service, id))
	if err != nil {
		return st, nil, err
	}
	revert, rw, err := t.read(t.layout.Revert(service, id))
	if err != nil {
		return st, nil, err
	}
	if verdict != nil {
		var v deploy.VerdictRecord
		if err := deploy.Unmarshal(t.layout.Verdict(service, id), verdict, &v); err != nil {
			return st, nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		st.Verdict = &v
	}
	if revert != nil {
		var r deploy.RevertRecord
		if err := deploy.Unmarshal(t.layout.Revert(service, id), revert, &r); err != nil {
			return st, nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		st.Revert = &r
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		select {
		case <-vw:
		case <-rw:
		case <-session:
		case <-ctx.Done():
		}
	}()
	return st, ch, nil
}

// read returns p's data (nil when p does not exist or is still empty)
// and a watch on it.
func (t *ZKTransport) read(p string) ([]byte, <-chan zk.Event, error) {
	for {
		data, _, w, err := t.conn.GetW(p)
		if err == nil {
			if len(data) == 0 {
				data = nil
			}
			return data, w, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, nil, fmt.Errorf("zookeeper get %s: %w", p, err)
		}
		ok, _, w, err := t.conn.ExistsW(p)
		if err != nil {
			return nil, nil, fmt.Errorf("zookeeper exists %s: %w", p, err)
		}
		if !ok {
			return nil, w, nil
		}
		// Created between the two calls: read it.
	}
}
