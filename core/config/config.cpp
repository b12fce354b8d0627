// Placeholder translation unit; config loading lands here.
namespace dape {}
