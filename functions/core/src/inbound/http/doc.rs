//! The small pieces of the OpenAPI document that the handlers and their parameters describe
//! themselves with. The document itself is built in [`super::openapi`], from the handlers;
//! this module depends on none of its siblings, so they can all use it.

use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// The `$ref` of a schema of the document's components.
pub(super) fn reference<T: ToSchema>() -> String {
    format!("#/components/schemas/{}", T::name())
}

/// A string, one of `texts`.
pub(super) fn one_of(texts: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(texts)).build()
}
