package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

// Accounts and devices.

func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO accounts (localpart, password_hash, admin, display_name, avatar_url, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (localpart) DO NOTHING`,
		a.Localpart, a.PasswordHash, a.Admin, a.DisplayName, a.AvatarURL, ms(nowIfZero(a.CreatedAt)))
	if err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.Localpart, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.Localpart, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create account %q: %w", a.Localpart, store.ErrExists)
	}
	return nil
}

func (s *Store) GetAccount(ctx context.Context, localpart string) (*store.Account, error) {
	var a store.Account
	var created int64
	err := s.rq.QueryRowContext(ctx, `SELECT localpart, password_hash, admin, display_name, avatar_url, created_at
		FROM accounts WHERE localpart = ?`, localpart).
		Scan(&a.Localpart, &a.PasswordHash, &a.Admin, &a.DisplayName, &a.AvatarURL, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: account %q: %w", localpart, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: account %q: %w", localpart, err)
	}
	a.CreatedAt = fromMS(created)
	return &a, nil
}

func (s *Store) SearchAccounts(ctx context.Context, term string, limit int) ([]store.Account, error) {
	t := strings.ToLower(term)
	rows, err := s.rq.QueryContext(ctx, `SELECT localpart, admin, display_name, avatar_url, created_at FROM accounts
		WHERE lower(localpart) LIKE ? ESCAPE '\' OR lower(display_name) LIKE ? ESCAPE '\'
		ORDER BY CASE WHEN lower(localpart) = ? OR lower(display_name) = ? THEN 0
		              WHEN lower(localpart) LIKE ? ESCAPE '\' OR lower(display_name) LIKE ? ESCAPE '\' THEN 1
		              ELSE 2 END, display_name, localpart
		LIMIT ?`, store.LikePattern(term), store.LikePattern(term), t, t,
		strings.TrimPrefix(store.LikePattern(term), "%"), strings.TrimPrefix(store.LikePattern(term), "%"), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search accounts: %w", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		var a store.Account
		var created int64
		if err := rows.Scan(&a.Localpart, &a.Admin, &a.DisplayName, &a.AvatarURL, &created); err != nil {
			return nil, fmt.Errorf("sqlite: search accounts: %w", err)
		}
		a.CreatedAt = fromMS(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: search accounts: %w", err)
	}
	return out, nil
}

// execOne runs a write that must touch a row, reporting ErrNotFound when
// it touched none.
func (s *Store) execOne(ctx context.Context, what, query string, args ...any) error {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (s *Store) SetDisplayName(ctx context.Context, localpart, name string) error {
	return s.execOne(ctx, "set display name of "+localpart,
		`UPDATE accounts SET display_name = ? WHERE localpart = ?`, name, localpart)
}

func (s *Store) SetAvatarURL(ctx context.Context, localpart, url string) error {
	return s.execOne(ctx, "set avatar of "+localpart,
		`UPDATE accounts SET avatar_url = ? WHERE localpart = ?`, url, localpart)
}

func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	created := nowIfZero(d.CreatedAt)
	seen := d.LastSeen
	if seen.IsZero() {
		seen = created
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO devices (localpart, device_id, display_name, token_hash, created_at, last_seen)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (localpart, device_id) DO UPDATE SET display_name = excluded.display_name,
			token_hash = excluded.token_hash, created_at = excluded.created_at, last_seen = excluded.last_seen`,
		d.Localpart, d.DeviceID, d.DisplayName, d.TokenHash, ms(created), ms(seen))
	switch {
	case err == nil:
		return nil
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return fmt.Errorf("sqlite: create device %q for %q: account: %w", d.DeviceID, d.Localpart, store.ErrNotFound)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("sqlite: create device %q for %q: token hash: %w", d.DeviceID, d.Localpart, store.ErrExists)
	default:
		return fmt.Errorf("sqlite: create device %q for %q: %w", d.DeviceID, d.Localpart, err)
	}
}

const deviceCols = `localpart, device_id, display_name, token_hash, created_at, last_seen`

func scanDevice(sc interface{ Scan(...any) error }) (store.Device, error) {
	var d store.Device
	var created, seen int64
	if err := sc.Scan(&d.Localpart, &d.DeviceID, &d.DisplayName, &d.TokenHash, &created, &seen); err != nil {
		return d, err
	}
	d.CreatedAt, d.LastSeen = fromMS(created), fromMS(seen)
	return d, nil
}

func (s *Store) DeviceByTokenHash(ctx context.Context, tokenHash []byte) (*store.Device, error) {
	d, err := scanDevice(s.rq.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE token_hash = ?`, tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: device by token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: device by token: %w", err)
	}
	return &d, nil
}

func (s *Store) ListDevices(ctx context.Context, localpart string) ([]store.Device, error) {
	rows, err := s.rq.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE localpart = ? ORDER BY device_id`, localpart)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list devices of %q: %w", localpart, err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list devices of %q: %w", localpart, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list devices of %q: %w", localpart, err)
	}
	return out, nil
}

func (s *Store) DeleteDevice(ctx context.Context, localpart, deviceID string) error {
	return s.execOne(ctx, "delete device "+deviceID+" of "+localpart,
		`DELETE FROM devices WHERE localpart = ? AND device_id = ?`, localpart, deviceID)
}

func (s *Store) DeleteAllDevices(ctx context.Context, localpart string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM devices WHERE localpart = ?`, localpart); err != nil {
		return fmt.Errorf("sqlite: delete devices of %q: %w", localpart, err)
	}
	return nil
}

func (s *Store) TouchDevice(ctx context.Context, localpart, deviceID string, at time.Time) error {
	return s.execOne(ctx, "touch device "+deviceID+" of "+localpart,
		`UPDATE devices SET last_seen = ? WHERE localpart = ? AND device_id = ?`, ms(at), localpart, deviceID)
}
