"""Query-shape limits: depth, aliases, tokens and an estimated cost (list sizes multiply, each sized
field at most its resolver's maximum)."""

from __future__ import annotations

from collections.abc import Callable

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.extensions.base_extension import SchemaExtension

from backend.services import conversations, search, usage
from backend.services.validation import MAX_PAGE_SIZE

MAX_DEPTH = 10
MAX_ALIASES = 20
MAX_TOKENS = 2000
MAX_COST = 20_000
SIZE_ARGUMENTS = ("first", "last", "maxResults", "days")
# The most items each sized field returns, whatever its argument says: a size given as a variable
# is costed at this maximum (the resolver's own bound). `check_size_maxima` refuses a schema with a
# sized field missing here.
SIZE_MAXIMA = {
    "Query.conversations": MAX_PAGE_SIZE,
    "Query.users": MAX_PAGE_SIZE,
    "Query.webSearch": search.MAX_RESULTS,
    "Query.documentSearch": search.MAX_RESULTS,
    "Query.usage": usage.MAX_DAYS,
    "Query.usageByUser": usage.MAX_DAYS,
    "Conversation.messages": conversations.MAX_MESSAGES,
    "Conversation.allMessages": MAX_PAGE_SIZE,
    "Message.siblingIds": MAX_PAGE_SIZE,
}
# Reading a conversation's messages loads its whole tree (up to MAX_CONVERSATION_MESSAGES nodes),
# whatever the page: costed so that one operation loads at most MAX_COST / TREE_COST = 40 trees.
TREE_FIELDS = (
    "Conversation.messages",
    "Conversation.allMessages",
    "Conversation.messageCount",
    "Query.exportConversation",
)
TREE_COST = 500


def _size(field: FieldNode, parent: GraphQLNamedType | None) -> int:
    """How many items a field may return, from its size argument or that argument's default; a
    variable counts as the field's maximum."""
    name = f"{parent.name}.{field.name.value}" if parent is not None else field.name.value
    for argument in field.arguments or ():
        if argument.name.value in SIZE_ARGUMENTS:
            if isinstance(argument.value, IntValueNode):
                return max(1, int(argument.value.value))
            if isinstance(argument.value, VariableNode):
                return SIZE_MAXIMA[name]
    if isinstance(parent, GraphQLObjectType) and field.name.value in parent.fields:
        for arg_name, arg in parent.fields[field.name.value].args.items():
            if arg_name in SIZE_ARGUMENTS:
                return max(1, arg.default_value) if isinstance(arg.default_value, int) else SIZE_MAXIMA[name]
    return 1


def check_size_maxima(schema: GraphQLSchema) -> None:
    """Every field taking a size argument has its maximum in SIZE_MAXIMA (else a variable could not
    be costed); raises at start-up, so a new paged field cannot slip through uncosted."""
    for type_name, named in schema.type_map.items():
        if not isinstance(named, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for field_name, field in named.fields.items():
            sized = [a for a in field.args if a in SIZE_ARGUMENTS]
            if sized and f"{type_name}.{field_name}" not in SIZE_MAXIMA:
                raise RuntimeError(
                    f"{type_name}.{field_name} takes {sized[0]} but has no entry in SIZE_MAXIMA"
                )


class CostRule(ValidationRule):
    """Reject operations whose estimated cost (fields x list sizes) exceeds MAX_COST."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.fragments = {
            d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: object) -> None:
        schema = self.context.schema
        root = {
            "query": schema.query_type,
            "mutation": schema.mutation_type,
            "subscription": schema.subscription_type,
        }[node.operation.value]
        cost = self._cost(node.selection_set, root, set())
        if cost > MAX_COST:
            self.report_error(
                GraphQLError(f"query is too expensive: estimated cost {cost} exceeds {MAX_COST}", node)
            )

    def _cost(
        self, selections: SelectionSetNode | None, parent: GraphQLNamedType | None, seen: set[str]
    ) -> int:
        if selections is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                child = None
                if isinstance(parent, GraphQLObjectType) and selection.name.value in parent.fields:
                    child = get_named_type(parent.fields[selection.name.value].type)
                inner = self._cost(selection.selection_set, child, seen)
                name = f"{parent.name}.{selection.name.value}" if parent is not None else ""
                is_list = (
                    isinstance(parent, GraphQLObjectType)
                    and selection.name.value in parent.fields
                    and isinstance(get_nullable_type(parent.fields[selection.name.value].type), GraphQLList)
                )
                # a list of scalars costs one per item; a tree-loading field its load as well
                total += 1 + _size(selection, parent) * (max(1, inner) if is_list else inner)
                total += TREE_COST if name in TREE_FIELDS else 0
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.context.schema.get_type(condition.name.value) if condition else parent
                total += self._cost(selection.selection_set, target, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    target = self.context.schema.get_type(fragment.type_condition.name.value)
                    total += self._cost(fragment.selection_set, target, seen | {selection.name.value})
            if total > MAX_COST:
                return total
        return total


def limit_rules() -> list[type[ASTValidationRule]]:
    """The depth, alias and cost limits as validation rules."""
    return [
        *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
        *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
        CostRule,
    ]


def limit_extensions() -> list[Callable[[], SchemaExtension]]:
    """Factories of the schema extensions enforcing the limits above (one instance per operation).

    The rule classes are built once, so parse and validation results are cached per query text
    (the caches are bounded LRUs; a query over the limits is rejected from the cache as well).
    """
    rules = limit_rules()
    return [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules(rules),
        ParserCache,
        ValidationCache,
    ]
