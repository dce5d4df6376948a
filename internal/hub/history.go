package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/syncapi"
)

// bridgeHistory answers the Bridge Protocol's `history` requests from the
// sync API, so a bridge reads a room's past under the same history
// visibility as a Matrix client's /messages.
type bridgeHistory struct{ sync *syncapi.API }

func (b bridgeHistory) Recent(ctx context.Context, userID, roomID string, limit int) ([]rooms.ClientEvent, error) {
	resp, err := b.sync.Messages(ctx, userID, roomID, "", true, limit)
	if errors.Is(err, syncapi.ErrNotVisible) {
		return nil, fmt.Errorf("%w: %s may not see this room", rooms.ErrForbidden, userID)
	}
	if err != nil {
		return nil, err
	}
	slices.Reverse(resp.Chunk) // newest first from /messages; oldest first here
	return resp.Chunk, nil
}
