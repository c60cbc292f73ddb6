"""Query-shape limits: depth, aliases, tokens and an estimated cost (list sizes multiply)."""

from __future__ import annotations

from collections.abc import Callable

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
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

MAX_DEPTH = 10
MAX_ALIASES = 20
MAX_TOKENS = 2000
MAX_COST = 20_000
SIZE_ARGUMENTS = ("first", "last", "maxResults")
VARIABLE_SIZE = 100  # a page size given as a variable is costed at the largest page


def _size(field: FieldNode, parent: GraphQLNamedType | None) -> int:
    """How many items a field may return, from its size argument or that argument's default."""
    for argument in field.arguments or ():
        if argument.name.value in SIZE_ARGUMENTS:
            if isinstance(argument.value, IntValueNode):
                return max(1, int(argument.value.value))
            if isinstance(argument.value, VariableNode):
                return VARIABLE_SIZE
    if isinstance(parent, GraphQLObjectType) and field.name.value in parent.fields:
        for name, arg in parent.fields[field.name.value].args.items():
            if name in SIZE_ARGUMENTS and isinstance(arg.default_value, int):
                return max(1, arg.default_value)
    return 1


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
                total += 1 + _size(selection, parent) * inner
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
