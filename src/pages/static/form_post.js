// OAuth 2.0 Form Post Response Mode: send the response on without a click. Without
// JavaScript the page's Continue button does the same.
document.getElementById("response").submit();
