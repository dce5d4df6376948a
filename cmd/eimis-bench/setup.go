package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
)

// parallel runs fn(0..n-1) on at most workers goroutines and returns the
// first error, cancelling the rest: setup is all-or-nothing, since a bench
// with half its rooms missing would measure something else.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idx := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range idx {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case idx <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idx)
	wg.Wait()
	return context.Cause(ctx)
}

// retry repeats a setup call through rate limiting and transient failures.
// Setup is not what is being measured, and servers with default rate limits
// (Synapse) will otherwise refuse to register a few hundred users quickly.
// alsoRetry lists further statuses worth another try for this call.
func retry(ctx context.Context, what string, fn func(ctx context.Context) error, alsoRetry ...int) error {
	backoff := 100 * time.Millisecond
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = fn(ctx); err == nil {
			return nil
		}
		var me *matrixError
		if !errors.As(err, &me) {
			return fmt.Errorf("%s: %w", what, err)
		}
		wait := backoff
		switch {
		case me.Status == http.StatusTooManyRequests:
			if me.RetryAfterMs > 0 {
				wait = time.Duration(me.RetryAfterMs) * time.Millisecond
			}
		case me.Status == 0 || me.Status >= 500 || slices.Contains(alsoRetry, me.Status):
		default:
			return fmt.Errorf("%s: %w", what, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return fmt.Errorf("%s: giving up: %w", what, err)
}

func (b *bench) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.requestTimeout)
}

// registerAll creates (or, on a rerun with the same prefix, logs in) every
// bench user.
func (b *bench) registerAll(ctx context.Context) error {
	b.accounts = make([]*account, b.cfg.users)
	return parallel(ctx, b.cfg.users, b.cfg.setupConcurrency, func(ctx context.Context, i int) error {
		name := b.cfg.userPrefix + strconv.Itoa(i)
		if b.cfg.idnatBase > 0 {
			name = directory.IDNatFromRPPS(directory.SyntheticRPPS(b.cfg.idnatBase + i))
		}
		var res *loginResponse
		err := retry(ctx, "register "+name, func(ctx context.Context) error {
			ctx, cancel := b.withTimeout(ctx)
			defer cancel()
			var err error
			if b.cfg.sharedSecret != "" {
				res, err = b.api.registerShared(ctx, b.cfg.sharedSecret, name, b.cfg.password)
			} else {
				res, err = b.api.registerOpen(ctx, name, b.cfg.password)
			}
			var me *matrixError
			if errors.As(err, &me) && me.Code == "M_USER_IN_USE" {
				res, err = b.api.login(ctx, name, b.cfg.password)
			}
			return err
		})
		if err != nil {
			return err
		}
		if res.AccessToken == "" || res.UserID == "" {
			return fmt.Errorf("register %s: response lacks user_id or access_token", name)
		}
		b.accounts[i] = &account{idx: int32(i), localpart: name, userID: res.UserID, token: res.AccessToken}
		return nil
	})
}

// createRooms has each room's first member create it, inviting the rest,
// who then join.
func (b *bench) createRooms(ctx context.Context) error {
	rooms := b.topo.rooms[:b.activeRooms]
	b.roomIDs = make([]string, len(rooms))
	err := parallel(ctx, len(rooms), b.cfg.setupConcurrency, func(ctx context.Context, r int) error {
		creator := b.accounts[rooms[r][0]]
		var invite []string
		for _, u := range rooms[r][1:] {
			invite = append(invite, b.accounts[u].userID)
		}
		return retry(ctx, "createRoom "+strconv.Itoa(r), func(ctx context.Context) error {
			ctx, cancel := b.withTimeout(ctx)
			defer cancel()
			id, err := b.api.createRoom(ctx, creator, fmt.Sprintf("eimis-bench %s room %d", b.cfg.userPrefix, r), invite)
			b.roomIDs[r] = id
			return err
		})
	})
	if err != nil {
		return err
	}
	type pair struct{ room, user int }
	var joins []pair
	for r, members := range rooms {
		for _, u := range members[1:] {
			joins = append(joins, pair{r, int(u)})
		}
	}
	return parallel(ctx, len(joins), b.cfg.setupConcurrency, func(ctx context.Context, i int) error {
		j := joins[i]
		return retry(ctx, fmt.Sprintf("join room %d as %s", j.room, b.accounts[j.user].localpart), func(ctx context.Context) error {
			ctx, cancel := b.withTimeout(ctx)
			defer cancel()
			return b.api.join(ctx, b.accounts[j.user], b.roomIDs[j.room])
			// A server whose invite is not yet visible to the join
			// path (eventual consistency between workers) says 403.
		}, http.StatusForbidden)
	})
}
