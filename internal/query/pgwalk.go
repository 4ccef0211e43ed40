package query

import (
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// pgWalk calls fn on every Node directly below n (one level of messages
// deep, through lists and wrapper messages).
func pgWalk(n *pg.Node, fn func(*pg.Node)) {
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			handle := func(msg protoreflect.Message) {
				if node, ok := msg.Interface().(*pg.Node); ok {
					fn(node)
				} else {
					visit(msg)
				}
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					handle(l.Get(i).Message())
				}
			} else if !fd.IsMap() {
				handle(v.Message())
			}
			return true
		})
	}
	visit(n.ProtoReflect())
}

// WalkPG calls fn on every node of a parse tree, depth first.
func WalkPG(n *pg.Node, fn func(*pg.Node)) {
	var rec func(*pg.Node)
	rec = func(x *pg.Node) {
		fn(x)
		pgWalk(x, rec)
	}
	rec(n)
}

// ForEachChild calls fn on every Node directly below n (for rewriting a
// tree in place: fn may replace *child and recurse itself).
func ForEachChild(n *pg.Node, fn func(*pg.Node)) { pgWalk(n, fn) }
