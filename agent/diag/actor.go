package diag

import "context"

// actorKey is the context key of the technician running an action.
type actorKey struct{}

// WithActor returns ctx carrying the technician on whose behalf a Terminal action runs, so
// that the agent records who decided (an ECR approval, for one) rather than just "diag".
func WithActor(ctx context.Context, technician string) context.Context {
	return context.WithValue(ctx, actorKey{}, technician)
}

// ActorFrom is the technician WithActor put in ctx, or "" when there is none.
func ActorFrom(ctx context.Context) string {
	s, _ := ctx.Value(actorKey{}).(string)
	return s
}
